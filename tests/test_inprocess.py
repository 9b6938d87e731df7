"""Changes within one process: a function's fingerprint is cached and
re-checked through guards, and small results are kept in memory, so a change
made between two calls in the same process (a rebound global, a list appended
to, a replaced ``__code__``, a class attribute set) must recompute exactly as
a fresh run would, and an unrelated change must not.

Each case runs ``target(5)`` twice (the second is a hit), applies a change,
and calls ``target(5)`` again; the printed results must equal those of the
same script with ``BYTECACHE=off``, and the body must run again exactly when
the case expects it.
"""

from __future__ import annotations

import pytest

from conftest import Runner

MODES = {
    "memoize": ("", "@bytecache.memoize"),
    "enable": ("bytecache.enable(min_seconds=0)\n", ""),
}

SCRIPT = """
import bytecache
{header}
{setup}
{target}
raw = getattr(target, "__wrapped__", target)
print(target(5))
print(target(5))
{change}
print(target(5))
"""

PLAIN = "{deco}\ndef target(n):\n    ran()\n    return {body}\n"

# (id, setup, target body expression or full definition, change, expect)
CASES: list[tuple[str, str, str, str, str]] = [
    ("global_rebound", "K = 1", "n + K", "K = 2", "recompute"),
    ("unrelated_globals_assigned", "K = 1", "n + K",
     "OTHER = 5\nfor i in range(3):\n    X = i", "reuse"),
    ("global_list_appended", "L = [1]", "n + sum(L)", "L.append(2)", "recompute"),
    ("global_dict_item_set", "D = {'a': 1}", "n + D['a']", "D['a'] = 2", "recompute"),
    # a dict read only by constant keys is keyed by those items
    ("global_dict_unread_key_added", "D = {'a': 1}", "n + D['a'] + D.get('b', 0)",
     "D['c'] = 2", "reuse"),
    ("global_dict_read_by_get_set", "D = {'a': 1}", "n + D.get('b', 0)", "D['b'] = 2",
     "recompute"),
    ("global_dict_membership_changed", "D = {'a': 1}", "n + ('b' in D)", "D['b'] = 2",
     "recompute"),
    ("global_dict_iterated_key_added", "D = {'a': 1}", "n + D['a'] + len(D)", "D['c'] = 2",
     "recompute"),
    ("global_dict_subscripted_by_argument", "D = {5: 1}", "n + D['a' if n > 9 else 5]",
     "D[5] = 7", "recompute"),
    ("global_defaultdict_key_added", "import collections\nD = collections.defaultdict(int, a=1)",
     "n + D['a']", "D['c'] = 2", "recompute"),
    ("list_inside_global_tuple", "T = ([1],)", "n + sum(T[0])", "T[0].append(5)",
     "recompute"),
    ("instance_attribute_set", "class Cfg:\n    pass\nCFG = Cfg()\nCFG.k = 1", "n + CFG.k",
     "CFG.k = 2", "recompute"),
    ("numpy_array_written", "import numpy as np\nA = np.ones(3)", "n + float(A.sum())",
     "A[0] = 5", "recompute"),
    ("name_in_generator_expression", "K = 1", "sum(k + n for k in [K])", "K = 2",
     "recompute"),
    ("dynamic_lookup", "K = 1", "n + globals()['K']", "K = 2", "recompute"),
    ("builtin_shadowed", "", "n + len([n])", "def len(x):\n    return 100", "recompute"),
    ("builtin_patched", "import builtins\n_len = builtins.len", "n + len([n])",
     "builtins.len = lambda x: 100", "recompute"),
    ("environment_read", "import os", "n + len(os.environ.get('BC_TEST_VAR', ''))",
     "os.environ['BC_TEST_VAR'] = 'abc'", "recompute"),
    # libraries: an attribute replaced after the plan was built
    ("library_attribute_replaced", "import math", "math.sqrt(n)",
     "math.sqrt = lambda x: -1.0", "recompute"),
    ("library_attribute_reached_internally_replaced", "import json, json.encoder",
     "json.dumps({'k': n})", "json.encoder.encode_basestring_ascii = lambda s: '\"?\"'",
     "recompute"),
    ("library_attribute_set_to_the_same_function", "import math", "math.sqrt(n)",
     "math.sqrt = math.sqrt", "reuse"),
    # functions reached
    ("helper_redefined", "def helper(x):\n    return x + 1", "helper(n)",
     "def helper(x):\n    return x + 2", "recompute"),
    ("helper_code_replaced", "def helper(x):\n    return x + 1", "helper(n)",
     "helper.__code__ = (lambda x: x + 3).__code__", "recompute"),
    ("helper_defaults_replaced", "def helper(x, k=1):\n    return x + k", "helper(n)",
     "helper.__defaults__ = (5,)", "recompute"),
    ("callee_of_callee_redefined",
     "def h2(x):\n    return x * 2\ndef h1(x):\n    return h2(x) + 1", "h1(n)",
     "def h2(x):\n    return x * 3", "recompute"),
    ("lambda_global_rebound", "G = lambda x: x + 1", "G(n)", "G = lambda x: x + 2",
     "recompute"),
    ("function_in_global_list_changed", "def h(x):\n    return x + 1\nFS = [h]", "FS[0](n)",
     "h.__code__ = (lambda x: x + 2).__code__", "recompute"),
    ("lru_cache_helper_changed",
     "import functools\n@functools.lru_cache\ndef helper(x):\n    return x + 1", "helper(n)",
     "helper.__wrapped__.__code__ = (lambda x: x + 7).__code__\nhelper.cache_clear()",
     "recompute"),
    ("partial_rebound", "import functools\nP = functools.partial(lambda a, b: a + b, 1)",
     "P(n)", "P = functools.partial(lambda a, b: a + b, 2)", "recompute"),
    # the function itself
    ("defaults_replaced", "", "{deco}\ndef target(n, k=1):\n    ran()\n    return n + k\n",
     "raw.__defaults__ = (10,)", "recompute"),
    ("mutable_default_appended", "",
     "{deco}\ndef target(n, acc=[1]):\n    ran()\n    return n + sum(acc)\n",
     "raw.__defaults__[0].append(4)", "recompute"),
    ("kwdefaults_replaced", "",
     "{deco}\ndef target(n, *, k=1):\n    ran()\n    return n + k\n",
     "raw.__kwdefaults__ = {'k': 3}", "recompute"),
    ("closure_cell_rebound",
     "def make():\n    k = 1\n    {deco}\n    def target(n):\n        ran()\n        return n + k\n"
     "    def setk(v):\n        nonlocal k\n        k = v\n    return target, setk\n"
     "target, setk = make()", "", "setk(2)", "recompute"),
    ("code_replaced", "def other(n):\n    ran()\n    return n * 100", "n + 1",
     "raw.__code__ = other.__code__", "recompute"),
    ("helper_attribute_set", "def helper(x):\n    return x + helper.k\nhelper.k = 1",
     "helper(n)", "helper.k = 2", "recompute"),
    ("helper_signature_set",
     "import inspect\ndef helper(a, b=1):\n    return a",
     "n + len(inspect.signature(helper).parameters)",
     "helper.__signature__ = inspect.Signature()", "recompute"),
    ("helper_annotation_added", "def helper(x: int):\n    return x",
     "n + len(helper.__annotations__)", "helper.__annotations__['y'] = str", "recompute"),
    ("singledispatch_registered",
     "import functools\n@functools.singledispatch\ndef fmt(x):\n    return 1", "n + fmt(n)",
     "@fmt.register\ndef _(x: int):\n    return 2", "recompute"),
    # classes
    ("metaclass_attribute_set", "class M(type):\n    k = 1\nclass C(metaclass=M):\n    pass",
     "n + C.k", "M.k = 2", "recompute"),
    ("metaclass_property_replaced",
     "class M(type):\n    @property\n    def k(cls):\n        return 1\n"
     "class C(metaclass=M):\n    pass", "n + C.k", "M.k = property(lambda cls: 2)",
     "recompute"),
    ("class_attribute_set",
     "class C:\n    factor = 2\n    def scale(self, x):\n        return x * self.factor",
     "C().scale(n)", "C.factor = 3", "recompute"),
    ("method_replaced",
     "class C:\n    def scale(self, x):\n        return x * 2", "C().scale(n)",
     "C.scale = lambda self, x: x * 10", "recompute"),
    ("base_class_attribute_set",
     "class B:\n    factor = 2\nclass C(B):\n    def scale(self, x):\n"
     "        return x * self.factor", "C().scale(n)", "B.factor = 7", "recompute"),
    ("bases_reassigned",
     "class B1:\n    factor = 2\nclass B2:\n    factor = 5\nclass C(B1):\n"
     "    def scale(self, x):\n        return x * self.factor", "C().scale(n)",
     "C.__bases__ = (B2,)", "recompute"),
    ("class_list_attribute_appended",
     "class C:\n    items = [1]", "n + sum(C.items)", "C.items.append(2)", "recompute"),
    ("unused_class_list_attribute_appended",
     "class C:\n    items = [1]\n    spare = [2]\n    def get(self):\n        return self.items",
     "n + sum(C().get())", "C.spare.append(3)", "reuse"),
    # modules
    ("module_attribute_set", "import cfg", "n + cfg.K", "cfg.K = 2", "recompute"),
    ("module_function_replaced", "import cfg", "cfg.f(n)", "cfg.f = lambda x: x + 9",
     "recompute"),
    ("module_imported_in_body", "import cfg",
     "{deco}\ndef target(n):\n    ran()\n    import cfg\n    return n + cfg.K\n",
     "cfg.K = 4", "recompute"),
    ("unrelated_module_attribute_set", "import cfg", "n + cfg.K", "cfg.OTHER = 2", "reuse"),
    # the cache itself
    ("cleared", "", "n + 1", "bytecache.clear()", "recompute"),
    ("disabled_block", "", "n + 1", "bytecache.disabled().__enter__()", "recompute"),
]

CFG = "K = 1\nOTHER = 1\ndef f(x):\n    return x + 1\n"


def script(mode: str, setup: str, target: str, change: str) -> str:
    header, deco = MODES[mode]
    if target and not target.startswith("{deco}"):
        target = PLAIN.replace("{body}", target)
    return SCRIPT.format(header=header, setup=setup.replace("{deco}", deco),
                         target=target.replace("{deco}", deco), change=change)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(("name", "setup", "target", "change", "expect"), CASES,
                         ids=[c[0] for c in CASES])
def test_change_between_calls(runner: Runner, mode: str, name: str, setup: str, target: str,
                              change: str, expect: str) -> None:
    runner.write("cfg.py", CFG)
    text = script(mode, setup, target, change)
    fresh = [line for line in runner.out(text, BYTECACHE="off") if line != "RAN"]
    out = runner.out(text)
    results = [line for line in out if line != "RAN"]
    assert results == fresh, f"{name}: {out}"
    ran = out.count("RAN")
    assert out[:2] == ["RAN", results[0]], out  # first call computes
    assert out[2] == results[1], out  # second call is a hit
    assert ran == (2 if expect == "recompute" else 1), f"{name} ({expect}): {out}"


COUNTING = """
import bytecache
{header}
def helper(x):
    helper.called += 1
    return x

helper.called = 0

{deco}
def target(n):
    ran()
    return helper(n)

print(target(5), target(5), helper.called)
"""


@pytest.mark.parametrize("mode", list(MODES))
def test_a_call_setting_an_attribute_of_a_function_it_reaches_is_a_mutation(
        runner: Runner, mode: str) -> None:
    header, deco = MODES[mode]
    proc = runner.run(COUNTING.format(header=header, deco=deco))
    assert proc.stdout.split() == ["RAN", "RAN", "5", "5", "2"], proc.stderr
    assert "`target` not cached: mutated" in proc.stderr
