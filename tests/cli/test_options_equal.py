"""Options are declared once: the flags of ``compress`` and ``sensitivity``, the recipe keys
and the ``CompressOptions`` fields agree in names, defaults and choices (issue 14).

1. Every ``compress`` parameter but ``cli/compress.CLI_ONLY`` is a field (after
   ``RENAMED``), and every field has a parameter.
2. The recipe keys ``load_recipe``/``build_options`` accept are the fields plus
   ``RECIPE_EXTRA_KEYS``, which are CLI-only parameters of ``compress``.
3. The default the CLI produces equals the field default, for every option.
4. Every ``click.Choice`` is the field's ``Literal`` set, in order; every value of a
   ``Literal`` field is accepted by its flag and a value outside it is refused.
5. ``sensitivity``: parameters but its ``CLI_ONLY`` are fields (after ``RENAMED``), with
   the field default unless listed in ``OWN_DEFAULTS``, and choices within the field's.
6. The README's option table lists every choice of every ``compress`` flag, and every
   flag.
"""

from __future__ import annotations

import json
import pathlib
import re
import typing
from typing import Any

import click
import pytest

from onnxprune import choices
from onnxprune.cli import compress as compress_cli
from onnxprune.cli import sensitivity as sensitivity_cli
from onnxprune.errors import UsageError
from onnxprune.options import (
    RECIPE_EXTRA_KEYS,
    CompressOptions,
    build_options,
    load_recipe,
    merge_options,
)

FIELDS = CompressOptions.model_fields
README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def literal_values(key: str) -> tuple[Any, ...]:
    """The values of the ``Literal`` in field ``key``'s annotation (also inside a union)."""
    annotation = FIELDS[key].annotation
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return tuple(v for arg in typing.get_args(annotation)
                 if typing.get_origin(arg) is typing.Literal for v in typing.get_args(arg))


def compress_params() -> dict[str, click.Parameter]:
    """Option key -> ``compress`` parameter (rule 1's renaming applied)."""
    return {compress_cli.option_key(p.name, None)[0]: p
            for p in compress_cli.command.params if p.name in
            compress_cli.option_names(compress_cli.command)}


def cli_defaults() -> dict[str, Any]:
    """Option key -> the value ``compress`` produces when the flag is not given."""
    ctx = compress_cli.command.make_context("compress", ["model.onnx"])
    return dict(compress_cli.option_key(name, ctx.params[name])
                for name in compress_cli.option_names(compress_cli.command))


def long_flag(param: click.Parameter) -> str:
    return next(o for o in param.opts if o.startswith("--"))


def test_every_compress_flag_is_a_field_and_every_field_a_flag():
    """Rule 1: adding a field without a flag, or a flag without a field, fails here."""
    keys = list(compress_params())
    assert len(keys) == len(set(keys)), "two flags set the same option"
    assert set(keys) - set(FIELDS) == set(), "flags without a CompressOptions field"
    assert set(FIELDS) - set(keys) == set(), "CompressOptions fields without a flag"
    names = {p.name for p in compress_cli.command.params}
    assert set(compress_cli.CLI_ONLY) <= names, "CLI_ONLY names a parameter that is gone"
    assert set(compress_cli.RENAMED) <= names


def test_recipe_keys_are_the_fields_plus_model_and_output(tmp_path):
    """Rule 2: a recipe with every key at its default loads; an unknown key names them."""
    assert set(RECIPE_EXTRA_KEYS) <= set(compress_cli.CLI_ONLY)
    recipe = {key: field.default for key, field in FIELDS.items()}
    recipe.update(target=0.5, model="m.onnx", output="o.onnx")
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    options = build_options(merge_options(load_recipe(path), {}))
    assert options == CompressOptions(target=0.5)
    with pytest.raises(UsageError, match="unknown option 'no_such_key'") as error:
        build_options({"target": 0.5, "no_such_key": 1})
    allowed = re.search(r"\(allowed: ([^)]*)\)", str(error.value)).group(1).split(", ")
    assert set(allowed) == set(FIELDS) | set(RECIPE_EXTRA_KEYS)


def test_compress_cli_defaults_are_the_field_defaults():
    """Rule 3 (what --help shows is what a run without the flag uses)."""
    defaults = cli_defaults()
    wrong = {key: (value, FIELDS[key].default) for key, value in defaults.items()
             if key in FIELDS and value != FIELDS[key].default}  # other keys: rule 1
    assert wrong == {}, "CLI default != CompressOptions default: {key: (cli, field)}"


def test_compress_choices_are_the_field_literals():
    """Rule 4, first half: every click.Choice equals its field's Literal, in order."""
    params = compress_params()
    checked = set()
    for key, param in params.items():
        if isinstance(param.type, click.Choice):
            assert tuple(param.type.choices) == literal_values(key), key
            checked.add(key)
    plain = {k for k, f in FIELDS.items() if typing.get_origin(f.annotation) is typing.Literal}
    assert checked == plain - {"mode"}  # --mode: a callback, for the short form N:M


@pytest.mark.parametrize("key", [k for k in FIELDS if literal_values(k)])
def test_compress_flag_accepts_exactly_the_field_values(key):
    """Rule 4, second half (also --mode, a callback, and --round-to's 'auto')."""
    param = compress_params()[key]
    flag = long_flag(param)
    for value in literal_values(key):
        ctx = compress_cli.command.make_context("compress", ["model.onnx", flag, value])
        assert compress_cli.option_key(param.name, ctx.params[param.name]) == (key, value)
        values = {key: value} if (key, value) == ("mode", "n:m") else {"target": 0.5, key: value}
        assert getattr(build_options(values), key) == value
    with pytest.raises(click.BadParameter):
        compress_cli.command.make_context("compress", ["model.onnx", flag, "no-such-value"])


def test_choice_sets_come_from_the_registries():
    """onnxprune.choices reads the importance registry (criteria) and the planner,
    recovery and training registries; every tuple's first entry is its option's default."""
    from onnxprune.importance.criteria import CRITERIA as DATA_FREE
    from onnxprune.importance.data_criteria import DATA_CRITERIA

    declared, scoring = choices.CRITERIA, choices.SCORING_CRITERIA
    assert declared == ("auto", *DATA_FREE, *DATA_CRITERIA)
    assert scoring == declared[1:]
    for key in FIELDS:
        if literal_values(key) and key != "round_to":
            assert FIELDS[key].default == literal_values(key)[0], key


def test_sensitivity_flags_are_compress_options():
    """Rule 5: the sensitivity flags that set compress options agree with the fields."""
    cmd = sensitivity_cli.command
    ctx = cmd.make_context("sensitivity", ["model.onnx"])
    names = [p.name for p in cmd.params if p.name not in sensitivity_cli.CLI_ONLY]
    keys = {name: sensitivity_cli.RENAMED.get(name, name) for name in names}
    assert set(keys.values()) - set(FIELDS) == set(), "sensitivity flags without a field"
    assert set(sensitivity_cli.OWN_DEFAULTS) <= set(keys.values())
    for param in cmd.params:
        if param.name in sensitivity_cli.CLI_ONLY:
            continue
        key = keys[param.name]
        if key not in sensitivity_cli.OWN_DEFAULTS:
            assert ctx.params[param.name] == FIELDS[key].default, key
        if isinstance(param.type, click.Choice):
            assert set(param.type.choices) <= set(literal_values(key)), key
    criterion = next(p for p in cmd.params if p.name == "criterion")
    assert tuple(criterion.type.choices) == choices.SCORING_CRITERIA
    assert ctx.params["criterion"] == choices.SCORING_CRITERIA[0]


def readme_table() -> dict[str, set[str]]:
    """Flag -> the values its README option-table rows list (``--metric params\\|flops``)."""
    listed: dict[str, set[str]] = {}
    for line in README.read_text().splitlines():
        if not line.startswith("| `-"):
            continue
        first_cell = line.split(" | ")[0]
        for flag, values in re.findall(r"`(--[a-z0-9-]+)(?: ([^`]*))?`", first_cell):
            listed.setdefault(flag, set()).update(values.replace("\\|", "|").split("|"))
    return listed


def test_readme_lists_every_flag_and_choice():
    """Rule 6 (the README table is hand-written; this keeps it complete)."""
    listed, text = readme_table(), README.read_text()
    for param in compress_cli.command.params:
        if not isinstance(param, click.Option):
            continue
        assert any(re.search(f"`{re.escape(opt)}[ `]", text) for opt in param.opts), \
            f"README lacks {param.opts}"
        if isinstance(param.type, click.Choice):
            flag = long_flag(param)
            missing = set(param.type.choices) - listed.get(flag, set())
            assert not missing, f"README's option table lacks {flag} {missing}"
    assert set(choices.MODES) <= listed["--mode"]
