"""Safe and precise keys: each case runs v1, edits the program, runs v2 in a
fresh process, and checks that v2 recomputed exactly when a fresh run of v2
would compute something else (or when the edit could matter)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import Runner

# Each case: (id, {file: v1 text}, {file: v2 text}, expect) with expect in
# {"recompute", "reuse"}. `target` prints RAN when its body runs; main.py
# prints the result as its last line.
HEADER = "import bytecache\n"

CASES: list[tuple[str, dict[str, str], dict[str, str], str]] = []


def case(name: str, v1: str | dict[str, str], v2: str | dict[str, str], expect: str) -> None:
    def files(v: str | dict[str, str]) -> dict[str, str]:
        return {"main.py": v} if isinstance(v, str) else v

    CASES.append((name, files(v1), files(v2), expect))


TARGET = """
@bytecache.memoize
def target(n):
    ran()
    return {body}

print(target(5))
"""


def t(body: str, prelude: str = "") -> str:
    return HEADER + prelude + TARGET.format(body=body)


# -- own code -------------------------------------------------------------
case("constant", t("n + 1"), t("n + 2"), "recompute")
case("operator", t("n + 1"), t("n - 1"), "recompute")
case("comment_and_blank_lines", t("n + 1"), "# a comment\n\n" + t("n + 1  # why"), "reuse")
case("docstring_added", t("n + 1"),
     t("n + 1").replace('ran()', '"""Adds one."""\n    ran()'), "reuse")
case("reformatted", t("n + 1"), t("(\n        n\n        + 1\n    )"), "reuse")
case("two_locals_split_across_lines",
     HEADER + '@bytecache.memoize\ndef target(n):\n    ran()\n    a, b = n, 2\n'
     "    return [a, b]\nprint(target(5))\n",
     HEADER + '@bytecache.memoize\ndef target(n):\n    ran()\n    a, b = n, 2\n'
     "    return [a,\n            b]\nprint(target(5))\n", "reuse")
case("moved_down", t("n + 1"), HEADER + "\n" * 30 + TARGET.format(body="n + 1"), "reuse")
CLASS_IN_BODY = ("@bytecache.memoize\ndef target(n):\n    ran()\n    class K:\n        v = 2\n"
                 "    return K.v * n\n\nprint(target(5))\n")
# 3.13 stores a class body's first line as a constant (`__firstlineno__`)
case("class_in_body_moved_down", HEADER + CLASS_IN_BODY, HEADER + "\n" * 5 + CLASS_IN_BODY,
     "reuse")
LOOP = HEADER + """
def pair(a, b):
    if a == 3:
        raise ValueError(a)
    return a * b

@bytecache.memoize
def target(n):
    ran()
    total = 0
    for i in range(n):
        try:
            total += pair({args})
        except ValueError:
            {handler}
    return total

print(target(5))
"""
# 3.13 fuses two local loads on one line into one instruction: the split
# version is a code unit longer, which moves the loop's jumps and the
# handler's exception-table range.
case("loads_split_inside_loop_and_try",
     LOOP.format(args="i, n", handler="total -= 1"),
     LOOP.format(args="i,\n                        n", handler="total -= 1"), "reuse")
case("handler_jumps_elsewhere",
     LOOP.format(args="i, n", handler="total -= 1"),
     LOOP.format(args="i, n", handler="break"), "recompute")
case("local_renamed",
     HEADER + '@bytecache.memoize\ndef target(n):\n    ran()\n    tmp = n * 3\n'
     "    return tmp\nprint(target(5))\n",
     HEADER + '@bytecache.memoize\ndef target(n):\n    ran()\n    triple = n * 3\n'
     "    return triple\nprint(target(5))\n", "reuse")
case("parameter_renamed_matters_for_keywords",
     HEADER + '@bytecache.memoize\ndef target(n):\n    ran()\n    return n\n'
     "print(target(5))\n",
     HEADER + '@bytecache.memoize\ndef target(m):\n    ran()\n    return m\n'
     "print(target(5))\n", "recompute")
case("default_value", HEADER + '@bytecache.memoize\ndef target(n, k=1):\n    ran()\n'
     "    return n * k\nprint(target(5))\n",
     HEADER + '@bytecache.memoize\ndef target(n, k=2):\n    ran()\n'
     "    return n * k\nprint(target(5))\n", "recompute")
case("default_from_global", HEADER + 'K = 1\n@bytecache.memoize\ndef target(n, k=K):\n'
     '    ran()\n    return n * k\nprint(target(5))\n',
     HEADER + 'K = 3\n@bytecache.memoize\ndef target(n, k=K):\n'
     '    ran()\n    return n * k\nprint(target(5))\n', "recompute")

# -- globals ----------------------------------------------------------------
case("global_int", t("n * K", "K = 2\n"), t("n * K", "K = 3\n"), "recompute")
case("global_same_value_other_expr", t("n * K", "K = 4\n"), t("n * K", "K = 2 * 2\n"),
     "reuse")
case("unrelated_global", t("n * K", "K = 2\nJ = 1\n"), t("n * K", "K = 2\nJ = 7\n"), "reuse")
case("global_dict_content", t("n * CFG['k']", "CFG = {'k': 2}\n"),
     t("n * CFG['k']", "CFG = {'k': 5}\n"), "recompute")
case("global_dict_unread_key_added", t("n * CFG['k'] + CFG.get('m', 0)", "CFG = {'k': 2}\n"),
     t("n * CFG['k'] + CFG.get('m', 0)", "CFG = {'k': 2, 'j': 9}\n"), "reuse")
case("global_dict_read_by_get_added", t("n * CFG['k'] + CFG.get('m', 0)", "CFG = {'k': 2}\n"),
     t("n * CFG['k'] + CFG.get('m', 0)", "CFG = {'k': 2, 'm': 9}\n"), "recompute")
case("global_dict_read_in_a_helper_key_added",
     t("helper(n)", "CFG = {'k': 2}\ndef helper(x):\n    return x * CFG['k']\n"),
     t("helper(n)", "CFG = {'k': 2, 'j': 1}\ndef helper(x):\n    return x * CFG['k']\n"),
     "reuse")
case("global_dict_iterated_key_added", t("n * sum(CFG.values())", "CFG = {'k': 2}\n"),
     t("n * sum(CFG.values())", "CFG = {'k': 2, 'j': 1}\n"), "recompute")
case("global_dict_escapes_to_a_helper",
     t("n * CFG['k'] + helper(CFG)", "CFG = {'k': 2}\ndef helper(d):\n    return len(d)\n"),
     t("n * CFG['k'] + helper(CFG)",
       "CFG = {'k': 2, 'j': 1}\ndef helper(d):\n    return len(d)\n"), "recompute")
case("future_annotations_added", t("clean(n)", "def clean(x):\n    return x + 1\n"),
     "from __future__ import annotations\n"
     + t("clean(n)", "def clean(x: int) -> int:\n    return x + 1\n"), "reuse")
case("global_only_in_lambda", t("(lambda: n * K)()", "K = 2\n"),
     t("(lambda: n * K)()", "K = 3\n"), "recompute")
case("global_only_in_genexpr", t("sum(K for _ in range(n))", "K = 2\n"),
     t("sum(K for _ in range(n))", "K = 3\n"), "recompute")
case("global_only_in_listcomp", t("[K * i for i in range(n)]", "K = 2\n"),
     t("[K * i for i in range(n)]", "K = 3\n"), "recompute")
case("builtin_shadowed", t("len([1] * n)"),
     t("len([1] * n)", "def len(x):\n    return -1\n"), "recompute")
case("numpy_global_array", t("float((A * n).sum())", "import numpy as np\nA = np.ones(3)\n"),
     t("float((A * n).sum())", "import numpy as np\nA = np.ones(3) * 2\n"), "recompute")
case("global_instance_state",
     t("OBJ.k * n", "class C:\n    def __init__(self, k):\n        self.k = k\nOBJ = C(2)\n"),
     t("OBJ.k * n", "class C:\n    def __init__(self, k):\n        self.k = k\nOBJ = C(3)\n"),
     "recompute")

# -- callees ----------------------------------------------------------------
HELPERS = "def inner(x):\n    return x + {k}\n\ndef helper(x):\n    return inner(x) * 2\n"
case("callee_depth_2", t("helper(n)", HELPERS.format(k=1)), t("helper(n)", HELPERS.format(k=2)),
     "recompute")
case("callee_comment_only", t("helper(n)", HELPERS.format(k=1)),
     t("helper(n)", "# note\n" + HELPERS.format(k="1  # same")), "reuse")
case("callee_in_nested_call", t("abs(helper(n))", HELPERS.format(k=1)),
     t("abs(helper(n))", HELPERS.format(k=3)), "recompute")
case("callee_passed_by_reference", t("list(map(helper, [n]))", HELPERS.format(k=1)),
     t("list(map(helper, [n]))", HELPERS.format(k=3)), "recompute")
case("unrelated_function_edited", t("helper(n)", HELPERS.format(k=1) + "def other():\n    return 1\n"),
     t("helper(n)", HELPERS.format(k=1) + "def other():\n    return 2\n"), "reuse")
case("closure_cell",
     t("add(n)", "def make(k):\n    def add(x):\n        return x + k\n    return add\nadd = make(1)\n"),
     t("add(n)", "def make(k):\n    def add(x):\n        return x + k\n    return add\nadd = make(2)\n"),
     "recompute")
REC = ("def even(x):\n    return x <= 0 or odd(x - 1)\n\n"
       "def odd(x):\n    return x > 0 and even(x - {k})\n")
case("mutual_recursion", t("even(n)", REC.format(k=1)), t("even(n)", REC.format(k=2)), "recompute")
case("recursion_unchanged", t("even(n)", REC.format(k=1)), t("even(n)", REC.format(k=1)), "reuse")
DECO = ("import functools\ndef deco(f):\n    @functools.wraps(f)\n    def w(*a):\n"
        "        return f(*a) {op} 1\n    return w\n@deco\ndef g(x):\n    return x\n")
case("decorator_wrapper_changed", t("g(n)", DECO.format(op="+")), t("g(n)", DECO.format(op="-")),
     "recompute")
case("functools_partial", t("p(n)", "import functools\ndef mul(a, b):\n    return a * b\n"
                            "p = functools.partial(mul, 2)\n"),
     t("p(n)", "import functools\ndef mul(a, b):\n    return a * b\np = functools.partial(mul, 3)\n"),
     "recompute")
case("dispatch_dict", t("OPS['f'](n)", "def a(x):\n    return x + 1\nOPS = {'f': a}\n"),
     t("OPS['f'](n)", "def a(x):\n    return x + 2\nOPS = {'f': a}\n"), "recompute")
case("dynamic_name_lookup",
     t("globals()['op_' + 'x'](n)", "def op_x(v):\n    return v * 2\n"),
     t("globals()['op_' + 'x'](n)", "def op_x(v):\n    return v * 3\n"), "recompute")
case("getattr_on_module",
     {"main.py": t("getattr(helpers, 'f' + 'x')(n)", "import helpers\n"),
      "helpers.py": "def fx(v):\n    return v + 1\n"},
     {"main.py": t("getattr(helpers, 'f' + 'x')(n)", "import helpers\n"),
      "helpers.py": "def fx(v):\n    return v + 2\n"}, "recompute")
SD = ("import functools\n@functools.singledispatch\ndef fmt(x):\n    return str(x)\n")
case("singledispatch_registration_added", t("[fmt(v) for v in (1.5, n)]", SD),
     t("[fmt(v) for v in (1.5, n)]", SD + "@fmt.register\ndef _(x: float):\n"
       "    return f'{x:.2f}'\n"), "recompute")
HINT = "def helper(x: {kind}):\n    return x\n"
case("annotation_changed", t("helper.__annotations__['x'].__name__ * n", HINT.format(kind="int")),
     t("helper.__annotations__['x'].__name__ * n", HINT.format(kind="float")), "recompute")
META = ("class Registry(type):\n    @property\n    def scale(cls):\n        return {k}\n"
        "class Model(metaclass=Registry):\n    pass\n")
case("metaclass_property", t("n * Model.scale", META.format(k=2)),
     t("n * Model.scale", META.format(k=3)), "recompute")
case("memoized_callee_edited",
     t("g(n) + 1", "@bytecache.memoize\ndef g(x):\n    return x * 2\n"),
     t("g(n) + 1", "@bytecache.memoize\ndef g(x):\n    return x * 3\n"), "recompute")

# -- classes ------------------------------------------------------------------
CLS = ("class Acc:\n    rate = {rate}\n    def __init__(self, x):\n        self.x = x\n"
       "    def total(self):\n        return self.x * self.rate\n"
       "    @property\n    def double(self):\n        return self.x * 2\n"
       "    @staticmethod\n    def unit():\n        return {unit}\n"
       "    def unused(self):\n        return {unused}\n")
BASE = dict(rate=2, unit=1, unused=0)


def cls(**kw: int) -> str:
    return CLS.format(**{**BASE, **kw})


case("method_class_attribute", t("Acc(n).total()", cls()), t("Acc(n).total()", cls(rate=3)),
     "recompute")
case("property_changed", t("Acc(n).double", cls()),
     t("Acc(n).double", cls().replace("self.x * 2", "self.x * 4")), "recompute")
case("staticmethod_changed", t("Acc.unit() + n", cls()), t("Acc.unit() + n", cls(unit=5)),
     "recompute")
case("init_changed", t("Acc(n).x", cls()),
     t("Acc(n).x", cls().replace("self.x = x", "self.x = x + 1")), "recompute")
case("base_class_changed",
     t("Sub(n).total()", cls() + "class Sub(Acc):\n    pass\n"),
     t("Sub(n).total()", cls(rate=7) + "class Sub(Acc):\n    pass\n"), "recompute")
case("enum_value", t("Color.RED.value * n", "import enum\nclass Color(enum.Enum):\n    RED = 1\n"),
     t("Color.RED.value * n", "import enum\nclass Color(enum.Enum):\n    RED = 2\n"), "recompute")
case("dataclass_default",
     t("Cfg().k * n", "import dataclasses\n@dataclasses.dataclass\nclass Cfg:\n    k: int = 1\n"),
     t("Cfg().k * n", "import dataclasses\n@dataclasses.dataclass\nclass Cfg:\n    k: int = 2\n"),
     "recompute")

# -- modules ------------------------------------------------------------------
case("module_attribute",
     {"main.py": t("cfg.K * n", "import cfg\n"), "cfg.py": "K = 1\n"},
     {"main.py": t("cfg.K * n", "import cfg\n"), "cfg.py": "K = 2\n"}, "recompute")
case("module_unrelated_attribute",
     {"main.py": t("cfg.K * n", "import cfg\n"), "cfg.py": "K = 1\nJ = 1\n"},
     {"main.py": t("cfg.K * n", "import cfg\n"), "cfg.py": "K = 1\nJ = 2\n"}, "reuse")
case("from_import_function",
     {"main.py": t("f(n)", "from helpers import f\n"),
      "helpers.py": "def f(x):\n    return x + 1\n"},
     {"main.py": t("f(n)", "from helpers import f\n"),
      "helpers.py": "def f(x):\n    return x + 2\n"}, "recompute")
case("import_depth_2",
     {"main.py": t("helpers.f(n)", "import helpers\n"),
      "helpers.py": "import deep\ndef f(x):\n    return deep.g(x)\n",
      "deep.py": "def g(x):\n    return x + 1\n"},
     {"main.py": t("helpers.f(n)", "import helpers\n"),
      "helpers.py": "import deep\ndef f(x):\n    return deep.g(x)\n",
      "deep.py": "def g(x):\n    return x + 5\n"}, "recompute")
case("import_inside_body",
     {"main.py": t("__import__('math') and helpers_f(n)",
                   "def helpers_f(x):\n    import helpers\n    return helpers.f(x)\n"),
      "helpers.py": "def f(x):\n    return x + 1\n"},
     {"main.py": t("__import__('math') and helpers_f(n)",
                   "def helpers_f(x):\n    import helpers\n    return helpers.f(x)\n"),
      "helpers.py": "def f(x):\n    return x + 9\n"}, "recompute")
case("package_submodule",
     {"main.py": t("pkg.sub.f(n)", "import pkg.sub\n"), "pkg/__init__.py": "",
      "pkg/sub.py": "def f(x):\n    return x + 1\n"},
     {"main.py": t("pkg.sub.f(n)", "import pkg.sub\n"), "pkg/__init__.py": "",
      "pkg/sub.py": "def f(x):\n    return x + 4\n"}, "recompute")

# Modules imported in a body are keyed without being imported: a library by
# what is installed, the user's module by its code (compiled, not run) and
# what that code imports. The call that imports them is stored: an import is
# not a mutation of what the call read.
BODY_IMPORT = HEADER + """
{prelude}
@bytecache.memoize
def target(n):
    ran()
    {body}

print(target(5))
"""


def body(text: str, prelude: str = "") -> str:
    return BODY_IMPORT.format(body=text.replace("\n", "\n    "), prelude=prelude)


LIB_IN_BODY = body("import colorsys\nreturn colorsys.rgb_to_hsv(n / 10, 0.5, 0.25)")
case("library_imported_in_body_stored", LIB_IN_BODY, LIB_IN_BODY, "reuse")
LIB_IN_HELPER = body("return helper(n)", "def helper(x):\n    import colorsys\n"
                     "    return colorsys.rgb_to_hls(x / 10, 0.5, 0.25)\n")
case("library_imported_in_helper_stored", LIB_IN_HELPER, LIB_IN_HELPER, "reuse")
LOCAL_IN_BODY = {"main.py": body("import helpers\nreturn helpers.f(n)"),
                 "helpers.py": "import deep\ndef f(x):\n    return deep.g(x) + 1\n",
                 "deep.py": "def g(x):\n    return x * 10\n"}
case("local_module_imported_in_body_stored", LOCAL_IN_BODY, LOCAL_IN_BODY, "reuse")
case("module_its_imported_module_imports_edited", LOCAL_IN_BODY,
     {**LOCAL_IN_BODY, "deep.py": "def g(x):\n    return x * 11\n"}, "recompute")
case("module_imported_in_body_comment_added", LOCAL_IN_BODY,
     {**LOCAL_IN_BODY, "deep.py": "# why ten\ndef g(x):\n    return x * 10  # ten\n"},
     "reuse")
case("module_imported_in_body_docstrings_added",
     {**LOCAL_IN_BODY, "deep.py": 'class C:\n    pass\ndef g(x):\n    return x * 10\n'},
     {**LOCAL_IN_BODY, "deep.py": '"""Deep."""\nclass C:\n    """A class."""\n'
                                  'def g(x):\n    """Ten times."""\n    return x * 10\n'},
     "reuse")
PKG_IN_BODY = {"main.py": body("from pkg import sub\nreturn sub.f(n)"),
               "pkg/__init__.py": "K = 1\n",
               "pkg/sub.py": "from . import K\ndef f(x):\n    return x + K\n"}
case("package_init_of_module_imported_in_body_edited", PKG_IN_BODY,
     {**PKG_IN_BODY, "pkg/__init__.py": "K = 2\n"}, "recompute")
case("submodule_imported_in_body_edited", PKG_IN_BODY,
     {**PKG_IN_BODY, "pkg/sub.py": "from . import K\ndef f(x):\n    return x - K\n"},
     "recompute")
case("package_imported_in_body_stored", PKG_IN_BODY, PKG_IN_BODY, "reuse")

# -- data files -----------------------------------------------------------
READ = t("open('data.txt').read().strip() * n")
case("data_file_changed", {"main.py": READ, "data.txt": "ab\n"},
     {"main.py": READ, "data.txt": "cd\n"}, "recompute")
case("data_file_touched_same_content", {"main.py": READ, "data.txt": "ab\n"},
     {"main.py": READ, "data.txt": "ab\n", "#touch": "data.txt"}, "reuse")
case("unrelated_data_file_changed", {"main.py": READ, "data.txt": "ab\n", "other.txt": "1"},
     {"main.py": READ, "data.txt": "ab\n", "other.txt": "2"}, "reuse")
LIST = t("sorted(os.listdir('d'))[:n]", "import os\n")
case("directory_listing_changed", {"main.py": LIST, "d/a": ""},
     {"main.py": LIST, "d/a": "", "d/b": ""}, "recompute")
case("numpy_file_changed",
     {"main.py": t("float(np.load('x.npy').sum()) * n", "import numpy as np\n"),
      "mk.py": "import numpy as np\nnp.save('x.npy', np.ones(3))\n"},
     {"main.py": t("float(np.load('x.npy').sum()) * n", "import numpy as np\n"),
      "mk.py": "import numpy as np\nnp.save('x.npy', np.ones(3) * 2)\n"}, "recompute")

# -- arguments ----------------------------------------------------------------
GETSTATE = ("class Cfg:\n    def __init__(self, k):\n        self.k = k\n"
            "    def __getstate__(self):\n        return {{}}\n"
            "    def __setstate__(self, state):\n        self.k = 0\n"
            "CFG = Cfg({k})\n")
case("getstate_omits_the_attribute_used", t("CFG.k * n", GETSTATE.format(k=1)),
     t("CFG.k * n", GETSTATE.format(k=2)), "recompute")
MASKED = "import numpy as np\nM = np.ma.array([1.0, 2.0, 3.0], mask={mask})\n"
case("masked_array_mask", t("float(M.sum()) * n", MASKED.format(mask=[0, 0, 1])),
     t("float(M.sum()) * n", MASKED.format(mask=[0, 1, 0])), "recompute")
SUB = ("import numpy as np\nclass Scaled(np.ndarray):\n    pass\n"
       "A = np.ones(3).view(Scaled)\nA.unit = {unit!r}\n")
case("ndarray_subclass_attribute", t("A.unit * n", SUB.format(unit="m")),
     t("A.unit * n", SUB.format(unit="km")), "recompute")
case("numpy_argument_same_content",
     t("float(x.sum())", "import numpy as np\nx = np.arange(5.0)\n").replace("target(5)", "target(x)")
     .replace("def target(n)", "def target(x)"),
     t("float(x.sum())", "import numpy as np\nx = np.arange(5.0)\n").replace("target(5)", "target(x)")
     .replace("def target(n)", "def target(x)"), "reuse")
case("unchanged_rerun", t("n + 1"), t("n + 1"), "reuse")
# A set display of constants is a frozenset constant; {8, 0} and {0, 8}
# iterate differently (their hashes collide).
case("set_constant_order", t("[x for x in {8, 0}][:n]"), t("[x for x in {0, 8}][:n]"),
     "recompute")
case("set_constant_of_strings_reordered", t("sorted(x for x in {'a', 'b'})[:n]"),
     t("sorted(x for x in {'b', 'a'})[:n]"), "reuse")


UNUSED = ("class Shape:\n    def __init__(self, w):\n        self.w = w\n"
          "    def area(self):\n        return self.w * 2\n"
          "    def describe(self):\n        return {v!r}\n")
case("unused_method_edited", t("Shape(n).area()", UNUSED.format(v="v1")),
     t("Shape(n).area()", UNUSED.format(v="v2")), "reuse")
case("method_called_from_a_helper",
     t("show(Shape(n))", UNUSED.format(v="v1") + "def show(s):\n    return s.describe()\n"),
     t("show(Shape(n))", UNUSED.format(v="v2") + "def show(s):\n    return s.describe()\n"),
     "recompute")
case("method_called_from_another_method",
     t("Shape(n).area()", UNUSED.format(v="v1").replace("self.w * 2", "self.describe()")),
     t("Shape(n).area()", UNUSED.format(v="v2").replace("self.w * 2", "self.describe()")),
     "recompute")
case("instance_argument_method_edited",
     t("s.area()", UNUSED.format(v="v1") + "s = Shape(3)\n").replace("target(5)", "target(s)")
     .replace("def target(n)", "def target(s)"),
     t("s.area()", UNUSED.format(v="v1").replace("self.w * 2", "self.w * 3") + "s = Shape(3)\n")
     .replace("target(5)", "target(s)").replace("def target(n)", "def target(s)"), "recompute")


def _apply(runner: Runner, files: dict[str, str]) -> None:
    for name, text in files.items():
        if name == "#touch":
            p = runner.work / text
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))
        else:
            runner.write(name, text)
    if "mk.py" in files:
        subprocess.run([sys.executable, "mk.py"], cwd=runner.work, check=True)


def _fresh(tmp_path, files: dict[str, str]) -> str:
    fresh = Runner(tmp_path / "fresh")
    _apply(fresh, files)
    return fresh.run(BYTECACHE="off").stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(("name", "v1", "v2", "expect"), CASES, ids=[c[0] for c in CASES])
def test_edit(tmp_path, name: str, v1: dict[str, str], v2: dict[str, str], expect: str) -> None:
    runner = Runner(tmp_path / "memo")
    _apply(runner, v1)
    first = runner.run()
    assert "RAN" in first.stdout, first.stderr
    _apply(runner, v2)
    second = runner.run()
    result = second.stdout.strip().splitlines()[-1]
    assert result == _fresh(tmp_path, v2), "STALE: v2 returned a result a fresh run would not"
    ran = "RAN" in second.stdout
    if expect == "recompute":
        assert ran, "v2 did not recompute"
    else:
        assert not ran, f"SPURIOUS: recomputed after a cosmetic edit\n{second.stderr}"
    assert "BytecacheWarning" not in first.stderr + second.stderr


def test_same_keys_under_different_hash_seeds(runner: Runner) -> None:
    script = """
import bytecache
from bytecache import _bytecache

def f(x, s=frozenset({"a", "b", "c"})):
    return {"k": x}

print(_bytecache.call_key(f, {"x": {"q", "r", "s"}, "s": frozenset({"a", "b", "c"})}, []).hex())
print(_bytecache.hash_value({"a": {"x", "y", "zz"}, "b": ("t", 1.5)}).hex())
"""
    outs = {tuple(runner.out(script, PYTHONHASHSEED=seed)) for seed in ("0", "1", "12345")}
    assert len(outs) == 1


def test_function_writing_a_global_is_not_cached(runner: Runner) -> None:
    proc = runner.run("""
import bytecache
N = 0

@bytecache.memoize
def f(x):
    global N
    N += 1
    ran()
    return x

f(1); f(1)
print(N)
""")
    assert proc.stdout.split() == ["RAN", "RAN", "2"]
    assert proc.stderr.count("BytecacheWarning") == 1


def test_call_mutating_its_argument_is_not_cached(runner: Runner) -> None:
    proc = runner.run("""
import bytecache

@bytecache.memoize
def f(xs):
    ran()
    xs.append(1)
    return len(xs)

a = []
print(f(a)); b = []
print(f(b))
""")
    assert proc.stdout.split() == ["RAN", "1", "RAN", "1"]


def test_call_writing_a_file_is_not_cached(runner: Runner) -> None:
    proc = runner.run("""
import bytecache

@bytecache.memoize
def f(x):
    ran()
    with open("out.txt", "w") as fh:
        fh.write(str(x))
    return x

f(1); f(1)
""")
    assert proc.stdout.count("RAN") == 2


def test_hit_inside_a_miss_carries_its_file_dependencies(runner: Runner) -> None:
    runner.write("data.txt", "1")
    script = """
import bytecache

@bytecache.memoize
def inner():
    return int(open("data.txt").read())

@bytecache.memoize
def outer(tag):
    ran("outer")
    return inner() * 10

inner()           # stored first: outer's miss below gets it from the cache
print(outer("x"))
"""
    runner.run(script)
    runner.write("data.txt", "2")
    assert runner.out(script) == ["RAN", "outer", "20"]


def test_environment_read_is_a_dependency(runner: Runner) -> None:
    script = """
import os, bytecache

@bytecache.memoize
def f():
    ran()
    return os.environ.get("MODE", "a")

print(f())
"""
    assert runner.out(script, MODE="a") == ["RAN", "a"]
    assert runner.out(script, MODE="a") == ["a"]
    assert runner.out(script, MODE="b") == ["RAN", "b"]


def test_unhashable_class_attribute_not_used_does_not_block(runner: Runner) -> None:
    out = runner.run("""
import threading, bytecache

class Worker:
    lock = threading.Lock()
    def __init__(self, k):
        self.k = k
    def run(self, x):
        return x * self.k

@bytecache.memoize
def f(x):
    ran()
    return Worker(2).run(x)

print(f(3), f(3))
""")
    assert out.stdout.split() == ["RAN", "6", "6"]
    assert "BytecacheWarning" not in out.stderr


def test_holders_of_wrapped_functions_are_keyed_by_what_they_hold(runner: Runner) -> None:
    # Keyed by `__wrapped__` alone, compose(inc, f) and compose(dbl, f) collided.
    proc = runner.run("""
import bytecache

class compose:
    def __init__(self, *funcs):
        self.funcs = funcs
        self.__wrapped__ = funcs[-1]
    def __call__(self, x):
        for f in reversed(self.funcs):
            x = f(x)
        return x

def f(x):
    return x + 1

def inc(x):
    return x + 10

def dbl(x):
    return x * 2

@bytecache.memoize
def apply(g, x):
    ran()
    return g(x)

print(apply(compose(inc, f), 1), apply(compose(dbl, f), 1), apply(compose(inc, f), 1))
""")
    assert proc.stdout.split() == ["RAN", "RAN", "12", "4", "12"], proc.stderr
def test_keying_does_not_run_a_module_imported_in_the_body(runner: Runner) -> None:
    # The module's top-level code runs when the body imports it, not before
    # (computing the key), and not at all on a hit.
    runner.write("helpers.py", "ran('helpers top-level')\nK = 3\n")
    script = """
import sys
import bytecache

@bytecache.memoize
def target(n):
    ran('body')
    import helpers
    return n * helpers.K

print(target(5), 'helpers' in sys.modules)
"""
    first = runner.run(script)
    assert first.stdout.split("\n")[:3] == ["RAN body", "RAN helpers top-level", "15 True"]
    second = runner.run(script)
    assert second.stdout.split() == ["15", "False"], second.stdout
    assert "BytecacheWarning" not in first.stderr + second.stderr


def test_a_call_that_imports_and_mutates_is_not_stored(runner: Runner) -> None:
    # Importing is not a mutation; a mutation of what the call read still is.
    script = """
import bytecache
SEEN = []

@bytecache.memoize
def target(n):
    ran()
    import colorsys
    SEEN.append(n)
    return len(SEEN)

print(target(5))
"""
    first = runner.run(script)
    assert "mutated" in first.stderr
    assert runner.run(script).stdout.split() == ["RAN", "1"]
