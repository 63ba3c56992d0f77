"""MuJoCo diagnosis scripts: whether evaluation feeds a policy what training fed it, and how a failing policy fails."""
