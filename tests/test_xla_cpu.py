"""ttame_jax.xla_cpu: the CPU compile options are accepted, act, and change no result."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttame_jax.xla_cpu import CPU_CONV_OPTIONS, CPU_OPTIONS, conv_jit, jit


def _conv(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@pytest.fixture
def tiny_map():
    """A 3x3 kernel on a 2x2 map: the case XLA's algebraic simplifier rewrites."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 2, 2, 16)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 16, 8)), jnp.float32)
    return x, w


def test_options_stop_the_operand_swap(tiny_map):
    if jax.default_backend() != "cpu":
        pytest.skip("CPU compiler options")
    default = jax.jit(_conv).lower(*tiny_map).compile().as_text()
    tuned = jax.jit(_conv, compiler_options=CPU_CONV_OPTIONS).lower(*tiny_map).compile().as_text()
    assert "rhs_reversal" in default  # XLA swapped the operands (the slow form)
    assert "rhs_reversal" not in tuned and "ynn_fusion" not in tuned


def test_conv_jit_matches_jit_and_numpy(tiny_map):
    x, w = tiny_map
    got = np.asarray(conv_jit(_conv)(x, w))
    np.testing.assert_allclose(got, np.asarray(jax.jit(_conv)(x, w)), atol=1e-5, rtol=1e-5)
    # direct sum over the zero-padded 3x3 window
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    ref = np.zeros(got.shape)
    for i in range(2):
        for j in range(2):
            ref[:, i, j] = np.einsum("bhwc,hwco->bo", xp[:, i : i + 3, j : j + 3], w)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_conv_jit_keeps_static_args(tiny_map):
    x, w = tiny_map
    f = conv_jit(lambda x, w, scale: _conv(x, w) * scale, static_argnames=("scale",))
    np.testing.assert_allclose(f(x, w, scale=2), 2 * np.asarray(f(x, w, scale=1)), rtol=1e-6)


def test_project_jit_turns_off_ynnpack_fusion_only(tiny_map):
    """``xla_cpu.jit`` (the project's jit) compiles without the YNNPACK graph; the operand
    swap stays (only ``conv_jit`` turns ``algsimp`` off)."""
    if jax.default_backend() != "cpu":
        pytest.skip("CPU compiler options")
    x = jnp.ones((2, 32, 32, 64), jnp.float32)  # large enough for XLA to use YNNPACK
    w = jnp.ones((3, 3, 64, 64), jnp.float32)
    default = jax.jit(_conv).lower(x, w).compile().as_text()
    tuned = jax.jit(_conv, compiler_options=CPU_OPTIONS).lower(x, w).compile().as_text()
    assert "ynn_fusion" in default and "ynn_fusion" not in tuned
    swapped = jax.jit(_conv, compiler_options=CPU_OPTIONS).lower(*tiny_map).compile().as_text()
    assert "rhs_reversal" in swapped


@pytest.mark.parametrize("form", ["bare", "factory", "call"])
def test_project_jit_decorator_forms(tiny_map, form):
    x, w = tiny_map

    def scaled(x, w, scale):
        return _conv(x, w) * scale

    if form == "bare":
        f = jit(lambda x, w: _conv(x, w) * 3)
        got = f(x, w)
    elif form == "factory":
        got = jit(static_argnames=("scale",))(scaled)(x, w, scale=3)
    else:
        got = jit(scaled, static_argnums=2)(x, w, 3)
    np.testing.assert_allclose(got, 3 * np.asarray(jax.jit(_conv)(x, w)), atol=1e-5, rtol=1e-5)


def test_project_jit_inside_an_outer_jit_and_grad(tiny_map):
    """jax refuses compiler options on nested jits: inside a transformation the project's
    jit is a plain nested jit."""
    x, w = tiny_map
    inner = jit(lambda x, w: jnp.sum(_conv(x, w) ** 2))
    outer = jax.jit(lambda x, w: inner(x, w) * 2)
    np.testing.assert_allclose(outer(x, w), 2 * inner(x, w), rtol=1e-5)
    grad = jax.grad(inner)(x, w)
    np.testing.assert_allclose(grad, jax.grad(lambda x: jnp.sum(_conv(x, w) ** 2))(x), rtol=1e-4)
    np.testing.assert_allclose(
        jax.vmap(inner, (0, None))(x[:, None], w), [inner(a[None], w) for a in x], rtol=1e-5
    )


def _fresh_python(code: str, **env) -> str:
    import os
    import subprocess
    import sys

    run_env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**run_env, **env}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


_PROCESS_CODE = """
import os, jax, jax.numpy as jnp
from ttame_jax import xla_cpu
print(xla_cpu.use_for_process())
print(os.environ.get("XLA_FLAGS"))
conv = lambda x, w: jax.lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
x, w = jnp.ones((2, 32, 32, 64)), jnp.ones((3, 3, 64, 64))
print("ynn_fusion" in jax.jit(conv).lower(x, w).compile().as_text())
print(xla_cpu.use_for_process())  # backends are up now: too late
"""


def test_use_for_process_sets_the_flags_before_jax_starts():
    if jax.default_backend() != "cpu":
        pytest.skip("CPU compiler options")
    set_now, flags, ynn, again = _fresh_python(_PROCESS_CODE).split("\n")[:4]
    assert set_now == "True" and again == "False"
    assert "--xla_cpu_experimental_ynn_fusion_type=" in flags
    assert "--xla_backend_optimization_level=1" in flags
    assert ynn == "False"  # a plain jax.jit compiled without the YNNPACK graph


def test_use_for_process_keeps_the_users_flags():
    out = _fresh_python(_PROCESS_CODE, XLA_FLAGS="--xla_backend_optimization_level=2")
    flags = out.split("\n")[1]
    assert "--xla_backend_optimization_level=2" in flags
    assert "--xla_backend_optimization_level=1" not in flags
    out = _fresh_python(_PROCESS_CODE, JAX_PLATFORMS="cpu,cuda")
    assert out.split("\n")[0] == "False"
