"""Memory sizes: Kubernetes quantities in the spec, Docker's sizes in compose, both as bytes.

And the environment names Docker accepts (anything without '=' or NUL)."""
from __future__ import annotations

import re
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.compose import ComposeError, convert_memory
from orchestrator.spec import MAX_MEMORY, MIN_MEMORY, ServiceApply, parse_memory

BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
UNITS = {**BINARY, **DECIMAL}


@pytest.mark.parametrize("text, nbytes", [
    ("64Mi", 64 * 2**20), ("100Ti", 100 * 2**40), ("1.5Gi", 3 * 2**29), ("512M", 512 * 10**6), ("1G", 10**9),
    ("7Ei", 7 * 2**60), ("9E", 9 * 10**18), ("1e9", 10**9), ("1E9", 10**9), ("128974848e0", 128974848),
    ("129e6", 129 * 10**6), ("10000k", 10**7), (" 64Mi ", 64 * 2**20), ("+64Mi", 64 * 2**20), ("6Mi", MIN_MEMORY),
    ("7340032.5", 7340033), (".5Gi", 2**29), ("64.Mi", 64 * 2**20), (67108864, 64 * 2**20), (67108864.0, 2**26),
    (str(MAX_MEMORY), MAX_MEMORY), ("1Pi", 2**50), ("2P", 2 * 10**15), ("4T", 4 * 10**12),
])
def test_kubernetes_quantities(text, nbytes):
    assert parse_memory(text) == nbytes
    assert ServiceApply.model_validate({"image": "x", "resources": {"memory": text}}).resources.memory == nbytes


def test_lowercase_m_is_refused_with_both_meanings():
    with pytest.raises(ValueError, match=r"'128m': a lowercase 'm' means milli \(1/1000\) in Kubernetes and MiB in "
                                         r"Docker; write '128Mi' for mebibytes \(or '128M' for 10\^6 bytes\)"):
        parse_memory("128m")


@pytest.mark.parametrize("text, hint", [
    ("512MB", "use 'M' (10^6) or 'Mi' (2^20)"), ("1GiB", "use 'Gi'"), ("1g", "use 'G' or 'Gi'"),
    ("64K", "use 'k' (1000) or 'Ki' (1024)"), ("100b", "use plain bytes"), ("1ti", "use 'Ti'"), ("2kb", "'Ki'"),
])
def test_docker_spellings_get_the_kubernetes_one(text, hint):
    with pytest.raises(ValueError, match=r"unit '.*' is not a Kubernetes quantity suffix; .*" + re.escape(hint)):
        parse_memory(text)


@pytest.mark.parametrize("bad, message", [
    ("lots", "is not a quantity"), ("", "is not a quantity"), ("Mi", "is not a quantity"), ("1 Mi Mi", "not a quantity"),
    ("64Xi", "unknown unit 'Xi'"), ("5n", "a fraction of a byte"), ("5u", "a fraction of a byte"),
    ("-64Mi", "must not be negative"), (-1, "must not be negative"), (True, "must be a byte count"),
    ([64], "must be a byte count"), (float("nan"), "finite"), (float("inf"), "finite"), ("1Ki", "at least 6Mi"),
    (0, "at least 6Mi"), ("8Ei", "too large"), ("10E", "too large"), ("1e19", "too large"), ("1e400", "too large"),
    (2**63, "too large"), (str(2**64), "too large"), ("9" * 70, "is not a quantity"),
])
def test_bad_quantities(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_memory(bad)


def test_bad_quantity_is_a_422_shaped_validation_error_on_the_field():
    with pytest.raises(ValidationError) as e:
        ServiceApply.model_validate({"image": "x", "resources": {"memory": "1e30"}})
    (err,) = e.value.errors()
    assert err["loc"] == ("resources", "memory") and "too large" in err["msg"]


@given(st.integers(min_value=0, max_value=10**7), st.sampled_from(sorted(UNITS)))
def test_integer_with_any_unit_is_that_many_units(n, unit):
    exact = n * UNITS[unit]
    try:
        got = parse_memory(f"{n}{unit}")
    except ValueError as exc:
        assert exact < MIN_MEMORY and "at least 6Mi" in str(exc) or exact > MAX_MEMORY and "too large" in str(exc)
    else:
        assert got == exact


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=999),
       st.sampled_from(sorted(BINARY)))
def test_fractions_round_up_to_a_whole_byte(whole, frac, unit):
    exact = (whole + Fraction(frac, 1000)) * BINARY[unit]
    want = -(-exact.numerator // exact.denominator)
    if MIN_MEMORY <= want <= MAX_MEMORY:
        assert parse_memory(f"{whole}.{frac:03d}{unit}") == want


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=0, max_value=12))
def test_exponent_form(mantissa, exp):
    want = mantissa * 10**exp
    if MIN_MEMORY <= want <= MAX_MEMORY:
        assert parse_memory(f"{mantissa}e{exp}") == want == parse_memory(f"{mantissa}E{exp}")


@given(st.integers(min_value=MIN_MEMORY, max_value=MAX_MEMORY))
def test_bytes_are_bytes_and_the_bounds_hold(n):
    assert parse_memory(n) == parse_memory(str(n)) == n


@given(st.integers(min_value=MAX_MEMORY + 1, max_value=2**80))
def test_beyond_64_bits_is_refused(n):
    with pytest.raises(ValueError, match="too large"):
        parse_memory(n)


@given(st.integers(min_value=0, max_value=10**6))
def test_lowercase_m_is_always_refused(n):
    with pytest.raises(ValueError, match="milli"):
        parse_memory(f"{n}m")


# ---------------------------------------------------------------- Docker's sizes (compose)

DOCKER = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(DOCKER)), st.booleans(), st.booleans(),
       st.booleans(), st.booleans())
def test_docker_sizes_are_binary_whatever_the_spelling(n, unit, upper, with_i, with_b, space):
    suffix = unit if unit in ("", "b") else unit + ("i" if with_i else "") + ("b" if with_b else "")
    text = f"{n}{' ' if space and suffix else ''}{suffix}"
    text = text.upper() if upper else text
    if n * DOCKER[unit] > MAX_MEMORY:
        with pytest.raises(ComposeError, match="too large"):
            convert_memory(text, "x")
    else:
        assert convert_memory(text, "x") == n * DOCKER[unit]


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=99),
       st.sampled_from("kmgtp"))
def test_docker_fractions_truncate_like_go(whole, frac, unit):
    want = int((whole + Fraction(frac, 100)) * DOCKER[unit])
    if want <= MAX_MEMORY:
        assert convert_memory(f"{whole}.{frac:02d}{unit}", "x") == want


@given(st.integers(min_value=0, max_value=2**70))
def test_docker_byte_counts_are_bounded(n):
    if n <= MAX_MEMORY:
        assert convert_memory(n, "x") == n
    else:
        with pytest.raises(ComposeError, match="too large"):
            convert_memory(n, "x")


def test_compose_and_spec_agree_on_what_128m_means():
    """The same text, two readers: compose (Docker) says 128 MiB; the spec refuses the ambiguity."""
    assert convert_memory("128m", "x") == 128 * 2**20 == parse_memory("128Mi")
    with pytest.raises(ValueError, match="milli"):
        parse_memory("128m")


# ---------------------------------------------------------------- environment names

@given(st.text(min_size=1, max_size=64).filter(lambda k: "=" not in k and "\x00" not in k))
def test_any_env_name_without_equals_or_nul_is_accepted(name):
    assert ServiceApply.model_validate({"image": "x", "env": {name: "v"}}).env == {name: "v"}


@pytest.mark.parametrize("bad", ["", "A=B", "A\x00", "x" * 1025])
def test_env_names_docker_refuses_are_refused(bad):
    with pytest.raises(ValidationError, match="invalid environment variable name"):
        ServiceApply.model_validate({"image": "x", "env": {bad: "v"}})


@pytest.mark.parametrize("text, message", [
    ("1e-99999999999", "at least 6Mi"), ("1e00000000000000031", "too large"), ("1e+3", "at least 6Mi"),
    ("1" * 65, "is not a quantity"),
])
def test_extreme_exponents_and_lengths_are_cheap_refusals(text, message):
    with pytest.raises(ValueError, match=message):
        parse_memory(text)


@pytest.mark.parametrize("value", ["9" * 10000, "²", "1" * 65 + "m"])
def test_compose_sizes_refuse_odd_digits_cleanly(value):
    with pytest.raises(ComposeError, match="invalid size"):
        convert_memory(value, "x")
