"""Test configuration: implicit rank promotion is an error in every test.

``jax_threefry_partitionable`` is switched off: the tests never depend on particular random
streams, and on CPU it makes the compilation of network initialisation about 6x faster
(12 s -> 2 s for a small V-Net; 13.6 s -> 3.2 s for the SASSNet smoke state on 4 devices). It
is exported as ``JAX_THREEFRY_PARTITIONABLE`` too, so that the command-line tests' subprocesses
(each of which initialises its networks once) save the same time.

Compiled programs are kept in JAX's persistent compilation cache, so that a second run of the
tests skips most compilation: every program that took at least 0.5 s to compile is stored in
``$JAXSEG_TEST_CACHE`` (default ``$XDG_CACHE_HOME/jaxseg/jax-tests``, i.e.
``~/.cache/jaxseg/jax-tests``; at most 2 GiB, least recently used entries go first; an empty
``JAXSEG_TEST_CACHE`` turns the cache off). The settings are also exported as ``JAX_*``
environment variables, so the subprocesses of the command-line tests share the cache.
"""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_threefry_partitionable", False)
os.environ["JAX_THREEFRY_PARTITIONABLE"] = "0"


def _cache_dir() -> str:
    if "JAXSEG_TEST_CACHE" in os.environ:
        return os.environ["JAXSEG_TEST_CACHE"]
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return str(Path(cache_home) / "jaxseg" / "jax-tests")


COMPILATION_CACHE = {
    "jax_compilation_cache_dir": _cache_dir(),
    "jax_persistent_cache_min_compile_time_secs": 0.5,
    "jax_compilation_cache_max_size": 2 * 1024**3,
}
if COMPILATION_CACHE["jax_compilation_cache_dir"]:
    for option, value in COMPILATION_CACHE.items():
        jax.config.update(option, value)
        os.environ[option.upper()] = str(value)


@pytest.fixture
def rng():
    """A numpy generator with a fixed seed, one per test."""
    return np.random.default_rng(0)
