"""The ViZDoom-Two-Colors scenario, written from source as a PWAD (no binary WAD is shipped).

The reference scenario's rules (SPEC §4), rebuilt with a UDMF map (the engine builds the nodes at load)
and a DECORATE lump (compiled by the engine at load), so no ACS compiler is needed:

* one square room, ``ROOM`` × ``ROOM`` map units, no inner walls, floor with Hexen-format sector special
  83 (``dDamage_LavaHefty``: 8 damage every 32 tics) as in the reference map;
* the player starts near the south wall facing north; a tall column of the episode's colour stands
  ``PILLAR_DISTANCE`` units straight ahead and removes itself after ``pillar_tics`` (45 in the
  reference script);
* 10 items of each colour at uniformly random positions at the start, then forever: one item of the
  episode's colour, wait 30 tics, one of the other colour, wait 30 tics;
* an item of the pillar's colour heals 25 (a ``Health`` pickup, so not taken at full health), one of the
  other colour damages 25.

The reference script draws the colour at random inside the map; here there is one map per colour
(``MAP01`` red, ``MAP02`` green) and the Python wrapper picks it from the episode seed, so evaluation is
reproducible and the colour of every episode is known. Item positions come from the engine's random
generator, seeded per episode by the wrapper.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from RATE_model.files import atomic_write

ROOM = 1280  # side of the square room (map units)
PLAYER_Y = -ROOM // 2 + 80  # player start: near the south wall, facing north
PILLAR_DISTANCE = 320  # the pillar spot, straight ahead of the player
MAPS = {True: "MAP01", False: "MAP02"}  # is_red -> map
CACHE_DIR = Path(__file__).resolve().parent.parent / "VizDoom_data" / "scenario"

# Thing numbers of our DECORATE actors, and the Freedoom sprites that show the two colours.
ED_PILLAR = {True: 30001, False: 30002}
ED_SPAWNER = {True: 30003, False: 30004}
PILLAR_SPRITE = {True: "COL3", False: "COL1"}  # tall red / tall green column
ITEM_SPRITE = {True: "SMRT", False: "SMGT"}  # short red / short green torch
ITEM_CLASS = {(True, True): "RedHeal", (True, False): "RedHurt", (False, True): "GreenHeal",
              (False, False): "GreenHurt"}  # (item is red, item matches the pillar) -> actor


@dataclass(frozen=True)
class ScenarioConfig:
    """The rules that can be changed; the defaults are the reference script's."""

    pillar_tics: int = 45  # the pillar is removed after this many tics (>= 2)
    items_at_start: int = 10  # items of each colour placed at map start
    respawn_tics: int = 30  # tics between two spawned items (colours alternate)
    heal: int = 25
    damage: int = 25
    floor_special: int = 83  # Hexen-format sector special of the floor (83: 8 damage / 32 tics)

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if not isinstance(v, int) or v < (0 if name in ("items_at_start", "floor_special") else 1):
                raise ValueError(f"scenario {name} must be a positive integer, got {v!r}")
        if self.pillar_tics < 2:
            raise ValueError(f"scenario pillar_tics must be >= 2, got {self.pillar_tics}")


DEFAULT = ScenarioConfig()


def _textmap(is_red: bool, cfg: ScenarioConfig) -> str:
    h = ROOM // 2
    corners = [(-h, -h), (-h, h), (h, h), (h, -h)]  # clockwise from above: each wall's front faces in
    out = ['namespace = "zdoom";']
    out += [f"vertex {{ x = {x:.1f}; y = {y:.1f}; }}" for x, y in corners]
    for i in range(4):
        out.append(f"linedef {{ v1 = {i}; v2 = {(i + 1) % 4}; sidefront = {i}; blocking = true; }}")
        out.append('sidedef { sector = 0; texturemiddle = "STARTAN2"; }')
    out.append('sector { heightfloor = 0; heightceiling = 128; texturefloor = "NUKAGE1"; '
               f'textureceiling = "CEIL3_5"; lightlevel = 192; special = {cfg.floor_special}; }}')
    skills = "skill1 = true; skill2 = true; skill3 = true; skill4 = true; skill5 = true; single = true;"
    things = [(0, PLAYER_Y, 90, 1), (0, PLAYER_Y + PILLAR_DISTANCE, 90, ED_PILLAR[is_red]),
              (0, 0, 0, ED_SPAWNER[is_red])]
    out += [f"thing {{ x = {x:.1f}; y = {y:.1f}; angle = {a}; type = {t}; {skills} }}" for x, y, a, t in things]
    return "\n".join(out) + "\n"


def _decorate(cfg: ScenarioConfig) -> str:
    r = ROOM // 2 - 32  # items stay clear of the walls
    lines = []
    for red in (True, False):
        colour = "Red" if red else "Green"
        # DECORATE reads an action after a state's duration on the same line: "Stop" needs a line of its own.
        # The engine randomises the first state's duration of map things (to desynchronise animations):
        # the pillar's first state lasts 1 tic, so its lifetime is exactly pillar_tics.
        lines += [f"actor {colour}Pillar {ED_PILLAR[red]} {{ Radius 16 Height 128 +SOLID", "  States {", "  Spawn:",
                  f"    {PILLAR_SPRITE[red]} A 1", f"    {PILLAR_SPRITE[red]} A {cfg.pillar_tics - 1}", "    Stop",
                  "  } }",
                  f'actor {colour}Heal : Health {{ Inventory.Amount {cfg.heal} Inventory.MaxAmount 100 '
                  'Inventory.PickupMessage ""', "  States {", "  Spawn:", f"    {ITEM_SPRITE[red]} A -1", "    Stop",
                  "  } }",
                  f'actor {colour}Hurt : CustomInventory {{ +INVENTORY.ALWAYSPICKUP Inventory.PickupMessage ""',
                  "  States {", "  Spawn:", f"    {ITEM_SPRITE[red]} A -1", "    Stop", "  Pickup:",
                  f"    TNT1 A 0 A_DamageSelf({cfg.damage})", "    Stop", "  } }"]

    def spawn(item: str, tics: int) -> str:
        return (f"    TNT1 A {tics} A_SpawnItemEx(\"{item}\", frandom({-r}, {r}), frandom({-r}, {r}), 0, 0, 0, 0, 0, "
                "SXF_NOCHECKPOSITION)")

    for red in (True, False):  # red: the spawner of the red-pillar map
        good, bad = ITEM_CLASS[(red, True)], ITEM_CLASS[(not red, False)]
        lines += [f"actor {'Red' if red else 'Green'}Spawner {ED_SPAWNER[red]} {{ +NOINTERACTION +NOBLOCKMAP",
                  "  States {", "  Spawn:", "    TNT1 A 0"]  # the first state's action never runs
        lines += [spawn(item, 0) for _ in range(cfg.items_at_start) for item in (good, bad)]
        lines += [f"    TNT1 A {cfg.pillar_tics}", "  Cycle:",
                  spawn(good, cfg.respawn_tics), spawn(bad, cfg.respawn_tics), "    Loop", "  } }"]
    return "\n".join(lines) + "\n"


def build_wad(cfg: ScenarioConfig = DEFAULT) -> bytes:
    """The PWAD bytes: MAP01 (red pillar) and MAP02 (green pillar) as UDMF, plus DECORATE."""
    lumps: list[tuple[str, bytes]] = []
    for is_red, name in MAPS.items():
        lumps += [(name, b""), ("TEXTMAP", _textmap(is_red, cfg).encode()), ("ENDMAP", b"")]
    lumps.append(("DECORATE", _decorate(cfg).encode()))
    body, directory, offset = b"", b"", 12
    for name, data in lumps:
        directory += struct.pack("<ii8s", offset, len(data), name.encode())
        body += data
        offset += len(data)
    return struct.pack("<4sii", b"PWAD", len(lumps), offset) + body + directory


def scenario_path(cfg: ScenarioConfig = DEFAULT, cache_dir: Path = CACHE_DIR) -> Path:
    """The scenario WAD for ``cfg``, written once into ``cache_dir`` (named by its content hash)."""
    wad = build_wad(cfg)
    path = Path(cache_dir) / f"two_colors_{hashlib.sha256(wad).hexdigest()[:12]}.wad"
    if not path.exists():
        with atomic_write(path) as f:  # parallel workers never read a half-written file
            f.write(wad)
    return path
