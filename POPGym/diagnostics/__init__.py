"""POPGym diagnosis scripts: the history-only experts measured on the protocol's test seeds beside the paper's data."""
