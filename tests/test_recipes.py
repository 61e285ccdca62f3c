"""Loading and validating recipe files: every problem names the file and the line or key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from builddoctor.profiles import MachineProfile
from builddoctor.recipe_schema import PLACEHOLDERS, RecipeError
from builddoctor.recipes import load_recipe, load_recipes, recipes_dir
from builddoctor.resolve import Facts, resolve

ROOT = Path(__file__).resolve().parent.parent
MACHINE = ROOT / "tests" / "fixtures" / "machines" / "this-machine.json"

EXPECTED = {
    "cpu-x86",
    "cpu-arm",
    "cpu-riscv",
    "cuda",
    "hip",
    "metal",
    "vulkan",
    "sycl",
    "blas",
    "openmp",
    "portable",
    "release",
    "no-network",
    "cpu",
    "macos",
}


@pytest.fixture
def rdir(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped recipes that a test may break; BUILDDOCTOR_RECIPES points at it."""
    d = tmp_path / "recipes"
    shutil.copytree(ROOT / "recipes", d)
    monkeypatch.setenv("BUILDDOCTOR_RECIPES", str(d))
    return d


def machine() -> MachineProfile:
    return MachineProfile.from_json(MACHINE.read_text())


def test_shipped_recipes_load():
    recipes = load_recipes()
    assert {r.name for r in recipes} == EXPECTED
    for r in recipes:
        assert r.path.name == f"{r.name}.toml"
        assert all(o.reason for o in r.options)
    backends = {r.backend: r.priority for r in recipes if r.kind == "backend"}
    order = sorted(backends, key=lambda b: -backends[b])
    assert order == ["cuda", "hip", "metal", "sycl", "vulkan", "cpu"]


def test_recipes_dir_order(monkeypatch, tmp_path):
    monkeypatch.delenv("BUILDDOCTOR_RECIPES", raising=False)
    assert recipes_dir() == ROOT / "recipes"  # checkout (no recipes inside the package here)
    monkeypatch.setenv("BUILDDOCTOR_RECIPES", str(tmp_path))
    assert recipes_dir() == tmp_path


def test_every_placeholder_is_computed():
    f = Facts(machine(), {r.name: r for r in load_recipes()})
    for name in PLACEHOLDERS:
        assert isinstance(f[name], str), name


def test_empty_file(rdir):
    (rdir / "zz-empty.toml").write_text("# nothing yet\n\n")
    with pytest.raises(RecipeError) as e:
        load_recipes()
    assert "zz-empty.toml:1" in e.value.message and "empty" in e.value.message


def test_malformed_toml_names_line(rdir):
    (rdir / "broken.toml").write_text('[recipe]\nname = "broken"\n\n[[option]]\nname = "GGML_X"\nvalue = ON\n')
    with pytest.raises(RecipeError) as e:
        load_recipes()
    assert "broken.toml:6:" in e.value.message and "malformed TOML" in e.value.message


def test_unknown_key_names_file_key_and_line(rdir):
    text = (rdir / "openmp.toml").read_text().replace('reason = "MSVC', 'raeson = "x"\nreason = "MSVC', 1)
    (rdir / "openmp.toml").write_text(text)
    with pytest.raises(RecipeError) as e:
        load_recipes()
    msg = e.value.message
    assert "openmp.toml:" in msg and "'raeson'" in msg and "did you mean 'reason'" in msg
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("raeson"))
    assert f"openmp.toml:{line}" in msg


def test_unknown_condition_and_placeholder(rdir):
    p = rdir / "blas.toml"
    p.write_text(p.read_text().replace('when = { os = "darwin" }', 'when = { oss = "darwin" }'))
    with pytest.raises(RecipeError, match=r"blas.toml:\d+ \(key 'oss'\).*did you mean 'os'"):
        load_recipes()
    p.write_text(p.read_text().replace("oss", "os").replace("comes with macOS", "comes with {os_nam}"))
    with pytest.raises(RecipeError, match=r"blas.toml.*\{os_nam\}.*did you mean '\{os_name\}'"):
        load_recipes()


def test_missing_reason_and_bad_values(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text('[recipe]\nname = "x"\n[[option]]\nname = "GGML_CUDA"\nvalue = "ON"\n')
    with pytest.raises(RecipeError, match=r"x.toml:\d+ \(key 'reason'\).*needs a 'reason'"):
        load_recipe(p)
    p.write_text('[recipe]\nname = "x"\n[[option]]\nname = "GGML_CUDA"\nvalue = 3\nreason = "r"\n')
    with pytest.raises(RecipeError, match="string value"):
        load_recipe(p)
    p.write_text('[recipe]\nname = "x"\nkind = "backend"\n')
    with pytest.raises(RecipeError, match="needs 'backend"):
        load_recipe(p)
    p.write_text('[option]\nname = "x"\n')
    with pytest.raises(RecipeError, match="no \\[recipe\\] table"):
        load_recipe(p)
    p.write_text('[recipe]\nname = "x"\n[[prerequisite]]\nname = "t"\n[prerequisite.install]\nubuntu = "apt"\n')
    with pytest.raises(RecipeError, match="unknown install platform 'ubuntu'"):
        load_recipe(p)
    p.write_bytes(b'[recipe]\nname = "\xff"\n')
    with pytest.raises(RecipeError, match=r"x.toml:2: not UTF-8"):
        load_recipe(p)


def test_duplicate_names(rdir):
    shutil.copy(rdir / "blas.toml", rdir / "blas2.toml")
    with pytest.raises(RecipeError, match="recipe name 'blas' is also used by blas.toml"):
        load_recipes()


def test_contradicting_recipes_are_reported(rdir):
    (rdir / "zz-debug.toml").write_text(
        '[recipe]\nname = "zz-debug"\n\n[[option]]\nname = "CMAKE_BUILD_TYPE"\nvalue = "Debug"\n'
        'reason = "debug symbols"\n'
    )
    with pytest.raises(RecipeError) as e:
        resolve(machine())
    msg = e.value.message
    assert "CMAKE_BUILD_TYPE" in msg and "release.toml" in msg and "zz-debug.toml" in msg
    assert "Release" in msg and "Debug" in msg


def test_same_value_from_two_recipes_is_fine(rdir):
    (rdir / "zz-same.toml").write_text(
        '[recipe]\nname = "zz-same"\n\n[[option]]\nname = "CMAKE_BUILD_TYPE"\nvalue = "Release"\n'
        'reason = "also release"\n'
    )
    plan = resolve(machine())
    assert [o.recipe for o in plan.options if o.name == "CMAKE_BUILD_TYPE"] == ["release"]


def test_declared_conflicts(rdir):
    (rdir / "zz-static.toml").write_text(
        '[recipe]\nname = "zz-static"\nconflicts = ["openmp"]\n\n[[option]]\nname = "GGML_STATIC"\n'
        'value = "ON"\nreason = "static"\n'
    )
    with pytest.raises(RecipeError, match="'zz-static'.*'openmp'.*conflict"):
        resolve(machine())
    (rdir / "zz-static.toml").write_text('[recipe]\nname = "zz-static"\nconflicts = ["nope"]\n')
    with pytest.raises(RecipeError, match="conflicts names 'nope'"):
        load_recipes()


def test_a_new_backend_is_a_new_file(rdir):
    """No code change: a file with a switch, a condition and a priority is chosen when it applies."""
    (rdir / "opencl.toml").write_text(
        '[recipe]\nname = "opencl"\nkind = "backend"\nbackend = "opencl"\ntitle = "OpenCL"\npriority = 60\n'
        'switch = "GGML_OPENCL"\nwhen = { gpu = { name_any = ["Adreno"] } }\n'
        'unmet = { gpu = "no Adreno GPU" }\npreferred_because = "OpenCL has Adreno kernels"\n\n'
        '[[option]]\nname = "GGML_OPENCL"\nvalue = "ON"\nreason = "Adreno kernels for {gpu_names}"\n'
    )
    m = machine()
    plan = resolve(m)
    assert any(s.what == "OpenCL" and "no Adreno GPU" in s.reason for s in plan.skipped)
    from builddoctor.profiles import GpuProfile

    m.gpus.append(GpuProfile("qualcomm", "Adreno (TM) 750", apis=["opencl", "vulkan"]))
    plan = resolve(m)
    assert plan.backend == "opencl"
    assert {o.name: o.value for o in plan.options}["GGML_OPENCL"] == "ON"
    assert "Adreno (TM) 750" in next(o.reason for o in plan.options if o.name == "GGML_OPENCL")


def test_cli_reports_broken_recipe_without_traceback(rdir):
    from builddoctor import cli

    cli._register()
    (rdir / "cuda.toml").write_text((rdir / "cuda.toml").read_text() + "\n[[option]\nname = 1\n")
    res = CliRunner().invoke(cli.cli, ["recipe", "--profile", str(MACHINE)])
    assert res.exit_code == 2
    assert "cuda.toml:" in res.output and "malformed TOML" in res.output
    assert "Traceback" not in res.output


def test_the_download_options_are_one_list_and_the_recipe_turns_them_off():
    """recipes/no-network.toml's [data] downloads is the one list (BD409 reads it): each is turned off
    by the recipe or off by default in the pinned llama.cpp, and each option the recipe turns off to
    stop a download is on the list (LLAMA_OPENSSL, which links the system's libssl, aside)."""
    from builddoctor.findings.flags import check_flags
    from builddoctor.llama_options import known_options
    from builddoctor.recipes import no_network_downloads

    listed = no_network_downloads()
    recipe = next(r for r in load_recipes() if r.name == "no-network")
    turned_off = {o.name for o in recipe.options if o.value == "OFF"}
    known = known_options()
    assert listed and len(listed) == len(set(listed))
    for name in listed:
        assert name in known.options, name
        assert name in turned_off or known.options[name]["default"] in ("", "OFF"), name
    assert turned_off - {"LLAMA_OPENSSL"} <= set(listed)
    fired = check_flags(" ".join(f"-D{n}=ON" for n in listed), None)
    assert sorted(f.title.split("=")[0] for f in fired if f.code == "BD409") == sorted(listed)


def test_malformed_data_file_names_file_and_line(tmp_path):
    from builddoctor import errors
    from builddoctor.tomlload import load_toml

    bad = tmp_path / "table.toml"
    bad.write_text("ok = 1\nlist = [1,\nnope = \n")
    with pytest.raises(errors.UserError) as e:
        load_toml(bad)
    assert f"{bad}:3:" in e.value.message and "malformed TOML" in e.value.message
