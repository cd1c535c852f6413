"""docs/CONFIG.md is generated from the config's field descriptions; these tests keep the page and the code in step."""

from pathlib import Path

from hardneg.configdoc import render_config_docs, sections

CONFIG_MD = Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md"


def test_config_md_is_current():
    assert CONFIG_MD.read_text(encoding="utf-8") == render_config_docs(), (
        "docs/CONFIG.md is stale: run `make docs` (python -m hardneg.configdoc > docs/CONFIG.md) and commit it")


def test_every_field_has_a_description():
    missing = [f"{s.path + '.' if s.path else ''}{name}" for s in sections()
               for name, field in s.model.model_fields.items() if not (field.description or "").strip()]
    assert not missing, f"config fields without a description (add Field(description=...)): {missing}"


def test_every_section_and_key_is_rendered():
    page = render_config_docs()
    for section in sections():
        assert f"## {section.path or 'top level'}" in page
        for name in section.model.model_fields:
            key = f"{section.path}.{name}" if section.path else name
            assert f"| `{key}` |" in page
