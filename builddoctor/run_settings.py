"""Run-time settings: which llama-bench flag measures a setting, which llama-cli/server flag sets it.

The table is data (``data/run_settings.toml``). ``tune`` measures the settings on its winner and
saves the chosen values beside the installed build (``run-settings.json``, in the install folder
the prefix's ``bin`` link points into); ``builddoctor run llama-server ...`` reads them back and
puts them before the user's arguments, leaving out every setting the user gave a value for.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import errors, paths
from builddoctor.errors import UserError
from builddoctor.profiles import Serializable, Stat
from builddoctor.tomlload import load_toml

SPECS_FILE = paths.DATA_DIR / "run_settings.toml"
SETTINGS_FILE = "run-settings.json"
SCHEMA = 1
#: the programs the saved settings are for (llama-bench measures them, llama-quantize takes none)
TOOLS = ("llama-cli", "llama-server")
MEASURES = ("pp", "tg", "both")


@dataclass(frozen=True)
class SettingSpec:
    """One [[setting]] of the data file."""

    name: str
    bench: str
    run: tuple[str, ...]
    values: tuple[str, ...] | str
    default: str
    measure: str = "both"
    why: str = ""

    def candidates(self, logical: int) -> list[str]:
        """The values to try; "threads": 1 ... the logical CPUs."""
        if self.values == "threads":
            return [str(t) for t in range(1, max(1, logical) + 1)]
        return list(self.values)

    def default_value(self, physical: int) -> str:
        return str(max(1, physical)) if self.default == "physical" else self.default


def load_specs(path: Path | None = None) -> list[SettingSpec]:
    """The settings table, checked: unknown keys, a missing flag, a bad `measure` are named."""
    path = Path(path or SPECS_FILE)
    doc = load_toml(path)
    names = {f.name for f in dataclasses.fields(SettingSpec)}
    out: list[SettingSpec] = []
    for i, raw in enumerate(doc.get("setting", [])):
        where = f"{path}: setting {i + 1} ({raw.get('name', '?')})"
        unknown = sorted(set(raw) - names)
        missing = sorted(k for k in ("name", "bench", "run", "values", "default") if not raw.get(k))
        if unknown or missing:
            raise UserError(
                f"{where}: "
                + (f"unknown key(s) {', '.join(unknown)}" if unknown else f"needs {', '.join(missing)}")
                + ".",
                exit_code=errors.USAGE,
            )
        values = raw["values"]
        if not (values == "threads" or (isinstance(values, list) and all(isinstance(v, str) for v in values))):
            raise UserError(f'{where}: values must be "threads" or a list of strings.', exit_code=errors.USAGE)
        if raw.get("measure", "both") not in MEASURES:
            raise UserError(f"{where}: measure must be one of {', '.join(MEASURES)}.", exit_code=errors.USAGE)
        run = raw["run"]
        if not isinstance(run, list) or not run or not all(isinstance(f, str) and f.startswith("-") for f in run):
            raise UserError(f"{where}: run must be a list of flags.", exit_code=errors.USAGE)
        out.append(
            SettingSpec(**{**raw, "run": tuple(run), "values": values if values == "threads" else tuple(values)})
        )
    return out


def gives(args: list[str], spec: SettingSpec) -> bool:
    """Whether the user's arguments set ``spec`` themselves (``-t 4``, ``--threads=4``)."""
    return any(a == f or a.startswith(f + "=") for a in args for f in spec.run)


def flags(values: dict[str, str], specs: list[SettingSpec], *, physical: int) -> list[str]:
    """The llama-cli/server flags of the chosen values: threads always, the rest when not the default."""
    out: list[str] = []
    for s in specs:
        v = values.get(s.name)
        if v is None or (v == s.default_value(physical) and s.values != "threads"):
            continue
        out += [s.run[0], v]
    return out


def apply(user_args: list[str], values: dict[str, str], specs: list[SettingSpec], *, physical: int) -> list[str]:
    """The saved settings the user did not set, then the user's arguments (theirs win)."""
    mine = [s for s in specs if not gives(user_args, s)]
    return flags(values, mine, physical=physical) + list(user_args)


@dataclass
class Trial(Serializable):
    """One llama-bench run of one value of one setting (the others at the values chosen so far)."""

    setting: str
    value: str
    round: int
    pp: Stat | None = None
    tg: Stat | None = None
    error: str | None = None


@dataclass
class SavedSettings(Serializable):
    """What run-settings.json holds: the values, the flags they make, and how they were measured."""

    values: dict[str, str]
    physical_cores: int
    logical_cpus: int
    schema_version: int = SCHEMA
    flags: list[str] = field(default_factory=list)
    winner: str = ""
    objective: str = ""
    model: str = ""
    reasons: dict[str, str] = field(default_factory=dict)


def settings_file(prefix: Path | None = None) -> Path:
    """run-settings.json in the install folder builddoctor's ``bin`` link points into."""
    link = Path(prefix or paths.data_home()) / "bin"
    return link.resolve().parent / SETTINGS_FILE


def save(saved: SavedSettings, prefix: Path | None = None) -> Path:
    f = settings_file(prefix)
    tmp = f.with_name(f".{f.name}.{os.getpid()}")
    tmp.write_text(saved.to_json(), encoding="utf-8")
    os.replace(tmp, f)
    return f


def load(prefix: Path | None = None) -> SavedSettings | None:
    """The saved settings, or None (none saved; a damaged file is taken as none)."""
    try:
        doc = json.loads(settings_file(prefix).read_text(encoding="utf-8"))
        saved = SavedSettings.from_dict(doc)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(saved.values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in saved.values.items()
    ):
        return None
    return saved


def installed_settings(prefix: Path | None = None) -> dict | None:
    """The run-time settings the last tune saved beside builddoctor's installed build (for
    `which`; `run` applies them); None if none. Here, not in the tune package, so that `which`
    reads them without importing what a tune runs (builddoctor.tune keeps the name)."""
    saved = load(prefix)
    if saved is None:
        return None
    link = Path(prefix or paths.data_home()) / "bin"
    return {
        "file": str(settings_file(prefix)),
        "winner": saved.winner,
        "objective": saved.objective,
        "bin_dir": str(link),
        "values": saved.values,
        "flags": saved.flags,
        "server": ["llama-server", "-m", "MODEL.gguf", *saved.flags],
        "cli": ["llama-cli", "-m", "MODEL.gguf", *saved.flags],
        "reason": "; ".join(f"{k}: {v}" for k, v in saved.reasons.items()),
    }


def tuned_argv(tool: str, user_args: list[str], prefix: Path | None = None) -> list[str] | None:
    """[tuned program, saved settings the user did not override, user's args], or None when no
    tuned build with ``tool`` is installed in the prefix."""
    name = tool if tool.startswith("llama-") else f"llama-{tool}"
    if name not in TOOLS:
        return None
    exe = Path(prefix or paths.data_home()) / "bin" / name
    saved = load(prefix)
    if saved is None or not exe.is_file():
        return None
    return [str(exe), *apply(list(user_args), saved.values, load_specs(), physical=saved.physical_cores)]
