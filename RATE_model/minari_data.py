"""Minari datasets (Farama's successor to D4RL's files) into the episode store, and episodes out as Minari
datasets. Needs the ``minari`` extra (``pip install -e ".[minari]"``); nothing here downloads anything.

Reading: :func:`load` opens a local dataset (``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``, as Minari
itself looks) and :func:`minari_store` streams its episodes, one in memory at a time, into an episode store
with fields ``obs``, ``action``, ``reward``, ``rtg`` and the episode's end kept as Minari has it: ``terminal``
(the last step terminated the episode) and ``timeout`` (it was truncated) — as D4RL's terminals and timeouts.
A Minari episode of T steps holds T + 1 observations; the store keeps the T that the actions were taken on.
Observations: a ``Box`` of uint8 images ([H, W, C] or [C, H, W], or [H, W] grey) is stored as [C, H, W] uint8;
any other ``Box`` (flattened), ``Discrete`` or ``MultiDiscrete`` as float32 components, each categorical one
one-hot encoded by the model and each real one standardised (the ``minari`` encoders). Actions: ``Discrete``
(stored from 0) or a 1-D ``Box``.

Writing: :func:`write_dataset` streams episodes (T + 1 observations each) into a new local dataset with Minari's
own writer, pixels stored as they are (Minari's default JPEG-encodes uint8 images lossily, which would blur a
colour cue), with the metadata Minari expects: the env spec where there is one, algorithm, author, code link
and description.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from RATE_model.collect import episode_path, run_cli
from RATE_model.config import ConfigError
from RATE_model.data import returns_to_go
from RATE_model.datafiles import DataError, load_npz
from RATE_model.store import EpisodeStore, fingerprint, open_or_write

READER_VERSION = 1  # part of a store's key: a changed reader rebuilds stores
ROOT_VARIABLE = "MINARI_DATASETS_PATH"
WHERE = f"Minari looks in ${ROOT_VARIABLE}, else ~/.minari/datasets"
CHANNELS = (1, 3, 4)  # a colour axis of this size marks an image's channel axis


def _minari() -> Any:
    try:
        import minari
    except ImportError:
        raise ConfigError('Minari datasets need the minari extra: pip install -e ".[minari]"') from None
    return minari


def datasets_root() -> Path:
    """The folder Minari keeps its local datasets in."""
    return Path(os.environ.get(ROOT_VARIABLE) or Path.home() / ".minari" / "datasets")


def dataset_dir(dataset_id: str) -> Path:
    """The folder of a local dataset (``<root>/<namespace>/<env>/<name>-v<N>``; its files are in ``data/``)."""
    return datasets_root() / dataset_id


def local_ids() -> list[str]:
    """The ids of the datasets in Minari's folder."""
    root = datasets_root()
    return sorted(str(p.parent.parent.relative_to(root)) for p in root.glob("**/data/metadata.json"))


def load(dataset_id: str) -> Any:
    """The local Minari dataset ``dataset_id`` (a ``minari.MinariDataset``), never downloaded: a missing or
    unreadable one is a DataError naming it and where Minari looks."""
    minari = _minari()
    folder = dataset_dir(dataset_id) / "data"
    if not (folder / "metadata.json").is_file():
        found = local_ids()
        have = f"; it has {', '.join(found[:8])}{' ...' if len(found) > 8 else ''}" if found else "; it has none"
        raise DataError(f"no Minari dataset {dataset_id!r} in {datasets_root()} ({WHERE}){have}. Nothing is "
                        f"downloaded here: copy the dataset there or fetch it yourself (minari download {dataset_id})")
    try:
        return minari.load_dataset(dataset_id, download=False)
    except Exception as e:  # json, h5py, pyarrow and Minari's own ValueErrors/AssertionErrors
        raise _damaged(dataset_id, folder, e) from None


def _damaged(dataset_id: str, folder: Path, e: BaseException) -> DataError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return DataError(f"Minari dataset {dataset_id!r} in {folder} is damaged or unreadable ({type(e).__name__}"
                     f"{': ' + first[:200] if first else ''}); {WHERE}")


# ------------------------------------------------------------------------------------------ spaces
@dataclass(frozen=True)
class Layout:
    """How a dataset's observations and actions are stored and fed to the model.

    ``image``: observations are uint8 frames stored [C, H, W] (``hwc``: Minari's are [H, W, C]; ``grey``: [H, W]);
    else float32 components [D] with ``nvec`` categories each (0: a real value). Actions: ``n_actions``
    categories from ``action_start`` (discrete), else a vector of ``n_actions`` in [``low``, ``high``]."""

    image: bool
    obs_shape: tuple[int, ...]
    hwc: bool
    grey: bool
    nvec: tuple[int, ...]
    obs_start: tuple[int, ...]
    discrete: bool
    n_actions: int
    action_start: int
    low: tuple[float, ...]
    high: tuple[float, ...]

    def observation(self, obs: np.ndarray) -> np.ndarray:
        """Observations [n, *space shape] as stored: frames [n, C, H, W] uint8, else components [n, D] float32."""
        obs = np.asarray(obs)
        if self.image:
            if self.grey:
                return obs[:, None]
            return np.ascontiguousarray(obs.transpose(0, 3, 1, 2)) if self.hwc else obs
        flat = obs.reshape(len(obs), -1)
        return (flat - np.asarray(self.obs_start)).astype(np.float32) if any(self.obs_start) else flat.astype(
            np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        """Actions [n] (discrete, int64 from 0) or [n, n_actions] float32, as stored."""
        a = np.asarray(action)
        if self.discrete:
            return a.reshape(len(a)).astype(np.int64) - self.action_start
        return a.reshape(len(a), self.n_actions).astype(np.float32)


def layout_of(observation_space: gym.Space, action_space: gym.Space, name: str = "the dataset") -> Layout:
    """The :class:`Layout` of a dataset's spaces; a space the model cannot read is a DataError naming it."""
    s = observation_space
    image, hwc, grey, nvec, start = False, False, False, (), ()
    if isinstance(s, gym.spaces.Box) and s.dtype == np.uint8 and len(s.shape) in (2, 3):
        image, grey = True, len(s.shape) == 2
        if grey:
            obs_shape = (1, *s.shape)
        elif s.shape[0] in CHANNELS:
            obs_shape = tuple(s.shape)
        elif s.shape[-1] in CHANNELS:
            hwc, obs_shape = True, (s.shape[2], s.shape[0], s.shape[1])
        else:
            raise DataError(f"{name}: observation space {s} looks like an image with no channel axis of 1, 3 or 4 "
                            "at either end")
    elif isinstance(s, gym.spaces.Box):
        obs_shape = (int(np.prod(s.shape)),)
        nvec, start = (0,) * obs_shape[0], (0,) * obs_shape[0]
    elif isinstance(s, gym.spaces.Discrete):
        obs_shape, nvec, start = (1,), (int(s.n),), (int(s.start),)
    elif isinstance(s, gym.spaces.MultiDiscrete) and s.nvec.ndim == 1:
        obs_shape, nvec = (len(s.nvec),), tuple(int(n) for n in s.nvec)
        start = tuple(int(x) for x in getattr(s, "start", np.zeros(len(nvec))))
    else:
        raise DataError(f"{name}: observation space {s} is not supported (a Box of vectors or images, Discrete or "
                        "MultiDiscrete; Dict and Tuple spaces are not)")
    a = action_space
    if isinstance(a, gym.spaces.Discrete):
        discrete, n, a_start, low, high = True, int(a.n), int(a.start), (), ()
    elif isinstance(a, gym.spaces.Box) and len(a.shape) == 1:
        discrete, n, a_start = False, int(a.shape[0]), 0
        low, high = tuple(float(x) for x in a.low), tuple(float(x) for x in a.high)
    else:
        raise DataError(f"{name}: action space {a} is not supported (Discrete or a 1-D Box)")
    return Layout(image, tuple(int(x) for x in obs_shape), hwc, grey, nvec, start, discrete, n, a_start, low, high)


# ------------------------------------------------------------------------------------------ reading
def episode_fields(ep: Any, layout: Layout, where: str) -> dict[str, np.ndarray]:
    """One Minari episode (``EpisodeData``) as the store's fields, checked: obs (its first T observations),
    action, reward, rtg, terminal and timeout [T]."""
    T = len(ep.rewards)
    obs = np.asarray(ep.observations)
    if T == 0:
        raise DataError(f"{where}: empty episode")
    if len(obs) != T + 1 or len(ep.actions) != T or len(ep.terminations) != T or len(ep.truncations) != T:
        raise DataError(f"{where}: {len(obs)} observations, {len(ep.actions)} actions, {len(ep.terminations)} "
                        f"terminations and {len(ep.truncations)} truncations for {T} rewards (Minari stores T + 1 "
                        "observations and T of the rest)")
    reward = np.asarray(ep.rewards, np.float32).reshape(T)
    if not np.isfinite(reward).all():
        raise DataError(f"{where}: rewards hold NaN or inf")
    action = layout.action(ep.actions)
    if not layout.discrete and not np.isfinite(action).all():
        raise DataError(f"{where}: actions hold NaN or inf")
    terminal = np.zeros(T, bool)
    timeout = np.zeros(T, bool)
    terminal[-1], timeout[-1] = bool(ep.terminations[-1]), bool(ep.truncations[-1])
    return {"obs": layout.observation(obs[:T]), "action": action, "reward": reward, "rtg": returns_to_go(reward),
            "terminal": terminal, "timeout": timeout}


def _data_files(dataset: Any) -> list[Path]:
    folder = Path(dataset.storage.data_path)
    return [p for p in (folder / "metadata.json", folder / "main_data.hdf5") if p.exists()]


def minari_store(dataset_id: str, store_dir: Path) -> tuple[EpisodeStore, Any, Layout]:
    """The episode store of a local Minari dataset in ``store_dir`` (built on first use, one episode in
    memory at a time, rebuilt when the dataset's files change), the dataset and its :class:`Layout`."""
    dataset = load(dataset_id)
    layout = layout_of(dataset.observation_space, dataset.action_space, f"Minari dataset {dataset_id!r}")
    folder = Path(dataset.storage.data_path)
    key = [[fingerprint(p) for p in _data_files(dataset)], {"reader": READER_VERSION, "dataset": dataset_id}]

    def episodes() -> Iterator[tuple[dict[str, np.ndarray], str]]:
        it = iter(dataset.iterate_episodes())
        while True:
            try:
                ep = next(it)
            except StopIteration:
                return
            except Exception as e:  # a truncated or corrupt data file
                raise _damaged(dataset_id, folder, e) from None
            where = f"Minari dataset {dataset_id!r} episode {ep.id}"
            yield episode_fields(ep, layout, where), f"{dataset_id}#{ep.id}"

    if dataset.total_episodes == 0:
        raise DataError(f"Minari dataset {dataset_id!r} in {folder} holds no episodes")
    return open_or_write(store_dir, key, episodes), dataset, layout


def encoder_kwargs(layout: Layout, store: EpisodeStore) -> dict[str, Any]:
    """The ``minari`` encoders' arguments (``ModelConfig.env_kwargs``): the observation layout, the real
    components' mean and std over the store (they travel with checkpoints), the action space."""
    kw: dict[str, Any] = {"obs_shape": list(layout.obs_shape), "discrete": layout.discrete,
                          "n_actions": layout.n_actions}
    if not layout.discrete:
        kw.update(action_low=list(layout.low), action_high=list(layout.high))
    if not layout.image:
        kw["obs_nvec"] = list(layout.nvec)
        real = [i for i, n in enumerate(layout.nvec) if n == 0]
        if real:
            mean, std = store.moments("obs")
            kw.update(obs_mean=mean[real].tolist(), obs_std=(std[real] + np.float32(1e-6)).tolist())
    return kw


def episode_returns(store: EpisodeStore) -> np.ndarray:
    """Each stored episode's return (float64 [n_episodes]): the return-to-go at its first step."""
    return np.asarray(store.take("rtg", store.offsets[:-1][None])[0], np.float64)


# ------------------------------------------------------------------------------------------ evaluation env
class StoredLayout(gym.Wrapper):
    """An env whose observations come as the store holds them (frames [C, H, W] uint8, or float32 components)
    and whose discrete actions count from 0, so the model trained on the store acts in it directly."""

    def __init__(self, env: gym.Env, layout: Layout):
        super().__init__(env)
        self.layout = layout
        if layout.image:
            self.observation_space = gym.spaces.Box(0, 255, layout.obs_shape, np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, layout.obs_shape, np.float32)
        if layout.discrete:
            self.action_space = gym.spaces.Discrete(layout.n_actions)

    def _obs(self, obs: Any) -> np.ndarray:
        return self.layout.observation(np.asarray(obs)[None])[0]

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        return self._obs(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.layout.discrete:
            action = int(action) + self.layout.action_start
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._obs(obs), reward, terminated, truncated, info


def eval_spec(dataset: Any, dataset_id: str) -> gym.envs.registration.EnvSpec:
    """The spec of the dataset's evaluation env as Minari recovers it: its ``eval_env_spec``, else the env it was
    collected on; a DataError when it records neither."""
    spec = getattr(dataset, "_eval_env_spec", None) or dataset.env_spec
    if spec is None:
        raise DataError(f"Minari dataset {dataset_id!r} records no env spec, so its env cannot be recovered for "
                        "evaluation")
    return spec


def recovered_env(spec: gym.envs.registration.EnvSpec, layout: Layout, max_episode_steps: int | None = None) -> gym.Env:
    """The env of ``spec`` (from :func:`eval_spec`) wrapped in :class:`StoredLayout`; a DataError naming it when it
    cannot be built here. Picklable with its arguments, for evaluation workers."""
    kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(spec, **kwargs)
    except Exception as e:  # an entry point that does not import, a missing simulator, bad kwargs
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(f"the Minari dataset's env {spec.id} cannot be built here ({type(e).__name__}: {first[:200]}); "
                        "install what it needs") from None
    return StoredLayout(env, layout)


# ------------------------------------------------------------------------------------------ writing
def write_dataset(dataset_id: str, episodes: Iterable[Mapping[str, Any]], observation_space: gym.Space | None,
                  action_space: gym.Space | None, env: str | gym.envs.registration.EnvSpec | None = None,
                  algorithm_name: str | None = None, author: str | None = None, author_email: str | None = None,
                  code_permalink: str | None = None, description: str | None = None,
                  requirements: list[str] | None = None) -> Path:
    """Write ``episodes`` — dicts of ``observations`` [T + 1, ...], ``actions`` [T, ...], ``rewards``,
    ``terminations``, ``truncations`` [T] — as the new local Minari dataset ``dataset_id``, one episode in memory
    at a time, without JPEG (pixels exact), hdf5; returns its folder. ``env``: the gymnasium id or spec the data
    was collected on (lets ``recover_environment`` build it; Minari builds it once, and takes the spaces given as
    None from it). An existing dataset is never overwritten; a
    failed write leaves nothing behind."""
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    check_dataset_id(dataset_id)
    folder = dataset_dir(dataset_id)
    if folder.exists():
        raise DataError(f"a Minari dataset {dataset_id!r} already exists in {folder}: choose another --dataset_id "
                        "(or version, -v1) or delete that folder")

    def buffers() -> Iterator[Any]:
        for i, ep in enumerate(episodes):
            T = len(ep["rewards"])
            if len(ep["observations"]) != T + 1 or len(ep["actions"]) != T:
                raise DataError(f"episode {i}: {len(ep['observations'])} observations and {len(ep['actions'])} "
                                f"actions for {T} rewards (Minari needs T + 1 and T)")
            yield EpisodeBuffer(observations=np.asarray(ep["observations"]), actions=np.asarray(ep["actions"]),
                                rewards=np.asarray(ep["rewards"], np.float64),
                                terminations=np.asarray(ep["terminations"], bool),
                                truncations=np.asarray(ep["truncations"], bool))

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is set to None", category=UserWarning)
            warnings.filterwarnings("ignore", message="env_spec is None", category=UserWarning)
            dataset = minari.create_dataset_from_buffers(
                dataset_id, buffers(), env=env, algorithm_name=algorithm_name, author=author,
                author_email=author_email, code_permalink=code_permalink, description=description,
                requirements=requirements, observation_space=observation_space, action_space=action_space,
                data_format="hdf5", jpeg_encoding=False)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # we made it: it did not exist before
        raise
    if dataset.total_episodes == 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise DataError(f"no episodes to write into Minari dataset {dataset_id!r}")
    return folder


def check_dataset_id(dataset_id: str) -> None:
    """ConfigError unless ``dataset_id`` is a valid Minari id, ``[namespace/]name-vN`` (the namespace may hold
    slashes: ``rate/vizdoom/two-colors-v0``)."""
    _minari()
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.namespace import validate_namespace

    try:
        namespace = parse_dataset_id(dataset_id)[0]
        if namespace is not None:
            validate_namespace(namespace)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--dataset_id {dataset_id!r} is not a Minari id ([namespace/]name-vN, a namespace of "
                          f"2 characters or more): {' '.join(str(e).split())[:200]}") from None


def env_spec(gym_id: str, max_episode_steps: int | None = None, **kwargs: Any) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``gym_id`` with ``kwargs`` (and a time limit): what a dataset records so that
    ``recover_environment`` builds the env as it was collected (the entry point must be a string)."""
    spec = dataclasses.replace(gym.spec(gym_id), kwargs=kwargs)
    return spec if max_episode_steps is None else dataclasses.replace(spec, max_episode_steps=max_episode_steps)


def minari_episode(obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: bool, truncated: bool,
                   final_obs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One of our episodes (``obs`` [T, ...]: the observations the T actions were taken on) in Minari's form:
    T + 1 observations, the last ``final_obs`` (the observation after the last action) or, for generators that do
    not keep it, a copy of the last one; termination and truncation flags on the last step."""
    obs = np.asarray(obs)
    T = len(obs)
    last = obs[-1:] if final_obs is None else np.asarray(final_obs, obs.dtype).reshape(1, *obs.shape[1:])
    terminations, truncations = np.zeros(T, bool), np.zeros(T, bool)
    terminations[-1], truncations[-1] = bool(terminated), bool(truncated) and not bool(terminated)
    return {"observations": np.concatenate([obs, last]), "actions": np.asarray(action),
            "rewards": np.asarray(reward, np.float64).reshape(T), "terminations": terminations,
            "truncations": truncations}


FINAL_OBS_NOTE = ("Each episode's last observation (after its last action) repeats the one before: the generator "
                  "does not keep it.")


def export(args: Any, items: Sequence[Any], to_episode: Callable[[Any], Mapping[str, Any]],
           observation_space: gym.Space | None, action_space: gym.Space | None, env: Any = None,
           algorithm_name: str | None = None, description: str | None = None) -> Path:
    """A generator's ``--format minari|both`` export: :func:`write_dataset` of ``to_episode(item)`` (a
    :func:`minari_episode`) for each of ``items`` (episode files, say) in order, with a progress bar and the
    author flags of :func:`add_export_flags`."""
    episodes = (to_episode(item) for item in tqdm(items, desc=f"Minari {args.dataset_id}", leave=False))
    return write_dataset(args.dataset_id, episodes, observation_space, action_space, env=env,
                         algorithm_name=algorithm_name, description=description, author=args.author,
                         author_email=args.author_email, code_permalink=args.code_permalink)


def export_frames(args: Any, folder: Path, to_episode: Callable[[Any], Mapping[str, Any]], frame_shape: Sequence[int],
                  n_actions: int, *, env: Any, algorithm_name: str, about: str, details: str,
                  items: Sequence[Any] | None = None) -> Path:
    """:func:`export` of a pixel generator's episodes (uint8 frames of ``frame_shape``, ``n_actions`` discrete
    actions): ``to_episode(item)`` of each of ``items``, by default of each episode file 0..--n_episodes-1 in
    ``folder`` read as its obs, action and reward. Described as "``about``, settings <the folder's meta.json>.
    ``details`` :data:`FINAL_OBS_NOTE`"."""
    if items is None:
        items, read = [episode_path(folder, i) for i in range(args.n_episodes)], to_episode
        to_episode = lambda path: read(load_npz(path, ("obs", "action", "reward")))
    meta = (Path(folder) / "meta.json").read_text().strip()
    return export(args, items, to_episode, gym.spaces.Box(0, 255, tuple(frame_shape), np.uint8),
                  gym.spaces.Discrete(n_actions), env=env, algorithm_name=algorithm_name,
                  description=f"{about}, settings {meta}. {details} {FINAL_OBS_NOTE}")


FORMATS = ("own", "minari", "both")


def add_export_flags(p: Any, dataset_id_help: str | None = None) -> None:
    """A generator's flags for writing a Minari dataset (checked by :func:`check_export_flags`)."""
    g = p.add_argument_group("Minari export (needs the minari extra)")
    g.add_argument("--format", choices=FORMATS, default="own",
                   help="own: this generator's files (default); minari: a local Minari dataset instead (the own files "
                        "are made in a temporary folder, then removed); both")
    g.add_argument("--dataset_id", help=dataset_id_help or "the Minari dataset id to write, e.g. "
                   f"rate/vizdoom/two-colors-v0 (into ${ROOT_VARIABLE}, else ~/.minari/datasets)")
    g.add_argument("--author", help="Minari metadata: author")
    g.add_argument("--author_email", help="Minari metadata: author e-mail")
    g.add_argument("--code_permalink", help="Minari metadata: link to the code that made the data")


def check_export_flags(args: Any) -> None:
    """ConfigError for export flags that cannot work, before anything is collected."""
    if args.format == "own":
        if args.dataset_id:
            raise ConfigError("--dataset_id needs --format minari or both")
        return
    if not args.dataset_id:
        raise ConfigError(f"--format {args.format} needs --dataset_id NAME (e.g. rate/<env>/<name>-v0)")
    check_dataset_id(args.dataset_id)
    if dataset_dir(args.dataset_id).exists():
        raise ConfigError(f"a Minari dataset {args.dataset_id!r} already exists in {dataset_dir(args.dataset_id)}: "
                          "choose another --dataset_id or delete that folder")


def collect_and_export(args: Any, collect: Callable[[Path], dict[str, Any]], export_to: Callable[[Path], Path],
                       check: Callable[[Any], None] = check_export_flags) -> dict[str, Any]:
    """A generator's run with the flags of :func:`add_export_flags`: ``check`` them, ``collect(folder)`` its own
    files into ``--out_dir`` (under ``--format minari`` a temporary folder beside the Minari datasets, kept until the
    export succeeds so an interrupted run resumes, then removed), then ``export_to(folder)`` when asked. Returns the
    collection's stats and, when exported, the dataset's id and folder."""
    check(args)
    if args.format == "own":
        return collect(Path(args.out_dir))
    folder = Path(args.out_dir)
    if args.format == "minari":
        folder = datasets_root() / ".rate-episodes" / args.dataset_id.replace("/", "__")
    stats = collect(folder)
    path = export_to(folder)
    if args.format == "minari":
        shutil.rmtree(folder, ignore_errors=True)
    return {**stats, "minari_dataset": args.dataset_id, "minari_path": str(path)}


def run_generator(parser: Any, collect: Callable[..., dict[str, Any]], export_to: Callable[[Any, Path], Path],
                  argv: list[str] | None = None) -> dict[str, Any]:
    """A generator's command line (:func:`RATE_model.collect.run_cli`) with the flags of :func:`add_export_flags`:
    :func:`collect_and_export` of ``collect(out_dir=folder, ...)`` — each of its other parameters that a flag is
    named after gets that flag's value, the rest keep their defaults — and ``export_to(args, folder)``."""
    params = inspect.signature(collect).parameters

    def run(args: Any) -> dict[str, Any]:
        flags = {k: v for k, v in vars(args).items() if k in params}
        return collect_and_export(args, lambda folder: collect(**{**flags, "out_dir": folder}),
                                  partial(export_to, args))

    return run_cli(parser, run, argv)
