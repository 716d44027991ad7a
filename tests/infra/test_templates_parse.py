"""Every .bicep and .bicepparam parses with pycep-parser and every
module reference resolves to a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra import bicep


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(bicep.BICEP_DIR)) for p in paths]


def test_the_expected_files_exist() -> None:
    assert bicep.MAIN.is_file()
    assert len(bicep.example_param_files()) >= 2
    assert {p.name for p in bicep.bicep_files()} >= {
        "main.bicep",
        "functionapp.bicep",
        "identity.bicep",
        "storage.bicep",
        "monitoring.bicep",
        "openai-role.bicep",
        "keyvault-role.bicep",
        "defender-ai.bicep",
    }


@pytest.mark.parametrize("path", bicep.bicep_files(), ids=_ids(bicep.bicep_files()))
def test_bicep_file_parses(path: Path) -> None:
    parsed = bicep.parse_bicep(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path} declares nothing"


@pytest.mark.parametrize("path", bicep.bicepparam_files(), ids=_ids(bicep.bicepparam_files()))
def test_bicepparam_file_parses_and_its_using_target_exists(path: Path) -> None:
    params = bicep.parse_bicepparam(path)
    assert params.using.is_file(), f"{path}: using target {params.using} does not exist"
    assert params.using.suffix == ".bicep"
    assert params.values, f"{path} sets no parameter"


@pytest.mark.parametrize("path", bicep.bicep_files(), ids=_ids(bicep.bicep_files()))
def test_module_references_resolve(path: Path) -> None:
    parsed = bicep.parse_bicep(path)
    for name, module in parsed.get("modules", {}).items():
        assert module.get("type") == "local", f"{path}: module {name} is not a local file (registry modules need network)"
    for name, target in bicep.module_paths(path):
        assert target.is_file(), f"{path}: module {name} points at missing {target}"
        bicep.parse_bicep(target)


def test_every_module_file_is_used_by_main() -> None:
    # Used by main.bicep directly or through a module it uses.
    used: set[Path] = set()
    pending = [bicep.MAIN]
    while pending:
        for _, target in bicep.module_paths(pending.pop()):
            if target not in used:
                used.add(target)
                pending.append(target)
    modules = set(bicep.MODULES_DIR.glob("*.bicep"))
    assert modules == {m.resolve() for m in modules} & used, f"unused modules: {sorted(modules - used)}"


def test_bicepparam_parser_rejects_a_file_without_using(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bicepparam"
    bad.write_text("param x = 1\n")
    with pytest.raises(ValueError, match="using"):
        bicep.parse_bicepparam(bad)


def test_an_undeclared_name_in_an_interpolation_is_an_error(tmp_path: Path) -> None:
    # pycep gives names and string literals alike; a name Bicep would not compile must not evaluate as its own text.
    template = tmp_path / "probe.bicep"
    template.write_text("param account string\nvar url = 'https://${acount}.table.core.windows.net'\n", encoding="utf-8")
    scope = bicep.Evaluator.for_template(bicep.parse_bicep(template), {"account": "st1"})
    with pytest.raises(bicep.Unresolved, match="acount"):
        scope.lookup("url")
