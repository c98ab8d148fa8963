"""JSON that strict parsers accept: a number that is not finite is written as null.

Python's `json` writes float("inf") and float("nan") as the bare words Infinity and NaN, which JSON does not
have: jq, JavaScript's JSON.parse and most other languages' parsers refuse the whole file. A metric can be
non-finite for good reasons (log10 of an exact-zero prediction under the nyu-hu protocol, as Hu's code
computes it; a diverged loss), so the files the package writes for people and other programs (results.json,
`evaluate --json`, `data stats --json`, predict's summary.json, the experiments' tables) go through `dumps`."""
import json
import math
import numbers


def finite_or_none(value):
    """`value` with every float that is not finite replaced by None, in nested dicts, lists and tuples."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):  # NumPy's floats too
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def dumps(value, **kwargs):
    """`json.dumps` of `finite_or_none(value)`; refuses (ValueError) what could still not be strict JSON."""
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)


def number(value, spec=".4f"):
    """A metric for a printed line: `value` formatted with `spec`, "n/a" for the None a non-finite one became."""
    return "n/a" if value is None else format(value, spec)
