"""The resolver's steps alone: the CUDA toolkit range, the options the recipes set, the backends
it skips, and the bundle's own options."""

from __future__ import annotations

from pathlib import Path

import pytest

from builddoctor import _buildplan
from builddoctor.profiles import BuildPlan, GpuProfile, MachineProfile, PlanOption
from builddoctor.recipe_parse import load_recipe
from builddoctor.recipes import Context, evaluate, load_recipes
from builddoctor.resolve import backend_recipes, choose_backend, collect_options, skipped_backends
from builddoctor.resolve.cuda import toolkit_range
from builddoctor.resolve.facts import Facts

MACHINES = Path(__file__).parent / "fixtures" / "machines"


def recorded(name: str) -> MachineProfile:
    return MachineProfile.from_json((MACHINES / f"{name}.json").read_text())


def nvcc_table() -> list[dict]:
    cuda = next(r for r in load_recipes() if r.name == "cuda")
    return cuda.data["nvcc_support"]


def gpu(name: str, cc: str) -> GpuProfile:
    return GpuProfile(vendor="nvidia", name=name, compute_capability=cc, apis=["cuda"])


def test_a_pascal_gpu_is_built_by_cuda_11_and_12_not_13():
    plan = BuildPlan(goal="native", backend="cuda")
    span = toolkit_range(plan, nvcc_table(), [gpu("GeForce GTX 1080", "6.1")])
    assert (span.lo, span.hi) == ("11.0", "13.0")
    assert "dropped GPUs below 7.5" in span.why_hi and "GTX 1080" in span.why_hi
    assert plan.notes == []


def test_the_range_for_two_gpus_is_what_builds_for_both():
    """A Blackwell card needs 12.8 or newer, a Pascal one a toolkit before 13: 12.8 up to 13."""
    plan = BuildPlan(goal="native", backend="cuda")
    span = toolkit_range(plan, nvcc_table(), [gpu("GeForce GTX 1080", "6.1"), gpu("GeForce RTX 5090", "12.0")])
    assert (span.lo, span.hi) == ("12.8", "13.0")
    assert "RTX 5090" in span.why_lo and "GTX 1080" in span.why_hi


def test_a_gpu_no_toolkit_supports_gets_a_note_and_no_bounds():
    plan = BuildPlan(goal="native", backend="cuda")
    span = toolkit_range(plan, nvcc_table(), [gpu("GeForce GTX 680", "3.0")])
    assert (span.lo, span.hi) == (None, None)
    assert len(plan.notes) == 1 and "GTX 680" in plan.notes[0] and "Vulkan or CPU" in plan.notes[0]


def _recipe(tmp_path: Path, name: str, body: str):
    p = tmp_path / f"{name}.toml"
    p.write_text(f'[recipe]\nname = "{name}"\n{body}')
    return load_recipe(p)


def test_an_option_whose_value_renders_empty_is_dropped_not_set(tmp_path):
    """{cuda_architectures} is empty on a machine without an NVIDIA GPU: nothing to set it from."""
    m = recorded("zen3-desktop")
    r = _recipe(
        tmp_path,
        "archs",
        '[[option]]\nname = "CMAKE_CUDA_ARCHITECTURES"\nvalue = "{cuda_architectures}"\nreason = "the GPUs"\n'
        '[[option]]\nname = "GGML_NATIVE"\nvalue = "ON"\nreason = "this CPU"\n',
    )
    options, dropped = collect_options([r], Facts(m, {}), Context(m))
    assert list(options) == ["GGML_NATIVE"] and options["GGML_NATIVE"].recipe is r
    assert dropped == ["CMAKE_CUDA_ARCHITECTURES"]


def test_the_first_recipe_keeps_its_reason_when_a_later_one_agrees(tmp_path):
    m = recorded("zen3-desktop")
    first = _recipe(tmp_path, "a", '[[option]]\nname = "GGML_NATIVE"\nvalue = "ON"\nreason = "first"\n')
    second = _recipe(tmp_path, "b", '[[option]]\nname = "GGML_NATIVE"\nvalue = "ON"\nreason = "second"\n')
    options, _ = collect_options([first, second], Facts(m, {}), Context(m))
    assert (options["GGML_NATIVE"].reason, options["GGML_NATIVE"].recipe) == ("first", first)


def _choose(machine: MachineProfile, backend: str):
    recipes = load_recipes()
    facts, ctx = Facts(machine, {r.name: r for r in recipes}), Context(machine)
    backends = backend_recipes(recipes, backend)
    verdicts = {r.name: evaluate(r.when, ctx) for r in backends}
    chosen, notes = choose_backend(backends, backend, verdicts, facts)
    return chosen, notes, skipped_backends(backends, chosen, backend, verdicts, facts)


def test_a_backend_asked_for_that_does_not_apply_is_planned_with_a_note():
    chosen, notes, skipped = _choose(recorded("zen3-desktop"), "cuda")  # no NVIDIA GPU there
    assert chosen.backend == "cuda"
    assert len(notes) == 1 and notes[0].startswith("--backend cuda was asked for although")
    assert chosen.label not in [s.what for s in skipped]


def test_a_backend_that_applies_but_was_not_asked_for_says_so():
    chosen, notes, skipped = _choose(recorded("rtx4090-cuda12"), "cpu")
    assert chosen.backend == "cpu" and notes == []
    cuda = next(s for s in skipped if s.what == "CUDA")
    assert cuda.reason == "skipped, --backend cpu was asked for"
    _, _, auto_skipped = _choose(recorded("rtx4090-cuda12"), "auto")
    assert all(s.what != "CUDA" for s in auto_skipped)


def test_an_unknown_backend_names_the_known_ones():
    from builddoctor import errors

    with pytest.raises(errors.InputError, match=r"Unknown backend 'cudaa': use auto or one of .*cuda"):
        backend_recipes(load_recipes(), "cudaa")


def test_bundle_options_fill_in_what_the_plan_does_not_set():
    plan = BuildPlan(goal="native", backend="cpu")
    plan.options = [PlanOption("LLAMA_BUILD_TESTS", "ON", "the plan wants them", "test")]
    _buildplan.add_bundle_options(plan)
    by_name = {o.name: o for o in plan.options}
    assert by_name["LLAMA_BUILD_TESTS"].value == "ON" and by_name["LLAMA_BUILD_TESTS"].recipe == "test"
    assert {n for n, _, _ in _buildplan.BUNDLE_OPTIONS} <= set(by_name)
    assert all(by_name[n].recipe == "bundle" for n, _, _ in _buildplan.BUNDLE_OPTIONS if n != "LLAMA_BUILD_TESTS")
