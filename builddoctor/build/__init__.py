"""BuildPlan -> BuildResult: configure and compile llama.cpp into a cache.

One finished build is one cache entry ``<cache>/builds/<key>/`` (the cmake build folder,
object files dropped, ``bin/`` with the programs and libraries, ``build.log`` and the
``builddoctor-build.json`` marker). The key hashes the source's identity, the plan's
options, the targets, the compilers and this module's recipe, so an identical second
request is answered from the cache at once.

A build runs in ``<cache>/builds/.tmp-<key>-<pid>`` and is renamed into place only when
it succeeded: an interrupted or killed build never leaves a half entry (leftover temp
folders are removed by the next build). Every llama.cpp compile takes the machine-wide
lock ``/tmp/builddoctor-llama-build.lock``, uses ccache when it is installed, and runs
under a time limit with a clean environment (``proc.stream``).

The parts, by job: ``settings`` (data, plan, environment), ``key`` (the cache key), ``commands``
(the one command builder), ``prerequisites``, ``cache`` (entries, the lock), ``cmake_run`` (configure,
compile, progress, log), ``builder`` (``build()`` as named steps) and ``verify``.
"""

from builddoctor.build.builder import build
from builddoctor.build.cache import _omit_variants, build_lock
from builddoctor.build.cmake_run import _NINJA, _EtaWeights, classify_failure, relevant_error_lines
from builddoctor.build.commands import (
    KEY_PLACEHOLDER,
    DryRun,
    choose_jobs,
    commands,
    compile_command,
    configure_command,
)
from builddoctor.build.key import cache_key
from builddoctor.build.prerequisites import _distro, prerequisite_hint, unmet_prerequisites
from builddoctor.build.settings import (
    BUILD_TIMEOUT,
    ProgressEvent,
    build_env,
    data,
    default_cache_root,
    environment,
    pin_data,
    targets_of,
)
from builddoctor.build.verify import Verification, problem_codes, verify
from builddoctor.resources import cpu_count

# what the rest of builddoctor, its tests and benchmarks/ use as build.<name>
__all__ = [
    "BUILD_TIMEOUT",
    "DryRun",
    "KEY_PLACEHOLDER",
    "ProgressEvent",
    "Verification",
    "_EtaWeights",
    "_NINJA",
    "_distro",
    "_omit_variants",
    "build",
    "build_env",
    "build_lock",
    "cache_key",
    "choose_jobs",
    "classify_failure",
    "commands",
    "compile_command",
    "configure_command",
    "cpu_count",
    "data",
    "default_cache_root",
    "environment",
    "pin_data",
    "prerequisite_hint",
    "problem_codes",
    "relevant_error_lines",
    "targets_of",
    "unmet_prerequisites",
    "verify",
]
