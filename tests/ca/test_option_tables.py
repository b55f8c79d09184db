"""The option tables in README.md and docs/ca/*.md say what the adapters' options dataclasses declare.

How a table is read (one table per heading in ``TABLES``: the first Markdown table after that heading):

- the columns are ``field | type | default | meaning``;
- the ``field`` cell names one or more fields, each in backticks: the row holds for each;
- ``type`` is the field's type without ``| None``: ``string`` (``str``, a path, an app setting's name, a
  ``Literal`` of strings), ``bool``, ``integer``, ``number`` (``float``), ``list of strings``, ``object``;
- ``default`` is ``required`` for a field without a default; one literal in backticks is the default itself, read
  as JSON when it is JSON (``30``, ``false``, ``[]``, ``{}``) and as text otherwise (``pki``); any other words
  (``none``, ``system trust``, ``the role's default``) mean the default is ``None``.

A test fails when a field is missing from its table, a row names no field, or a type or default differs. The
``dns_options`` table of ``challtestsrv`` is not checked: that provider lives in ``devstack/`` and reads its one
option by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest

from renewal.ca import ADAPTERS
from renewal.ca._options import CommonOptions, RetirementOptions, Secret
from renewal.ca.acme import AcmeOptions
from renewal.ca.adcs import AdcsOptions
from renewal.ca.cfssl import CfsslOptions
from renewal.ca.ejbca import EjbcaOptions
from renewal.ca.est import EstOptions
from renewal.ca.local import LocalOptions
from renewal.ca.vault import VaultOptions
from renewal.dns.azure import AzureDnsOptions

ROOT = Path(__file__).resolve().parents[2]
ADAPTER_OPTIONS: dict[str, type[Any]] = {
    "local": LocalOptions,
    "acme": AcmeOptions,
    "cfssl": CfsslOptions,
    "vault": VaultOptions,
    "ejbca": EjbcaOptions,
    "adcs": AdcsOptions,
    "est": EstOptions,
}
# (file, heading the table follows) -> the options class it documents.
TABLES: dict[tuple[str, str], type[Any]] = {
    ("README.md", '#### The local CA adapter (`"adapter": "local"`)'): LocalOptions,
    ("README.md", "### Every adapter"): CommonOptions,
    ("README.md", "### ACME (`acme`)"): AcmeOptions,
    ("README.md", "##### `dns_options` for `azure`"): AzureDnsOptions,
    ("README.md", "### CFSSL (`cfssl`)"): CfsslOptions,
    ("README.md", "### HashiCorp Vault / OpenBao PKI (`vault`)"): VaultOptions,
    ("README.md", "### EJBCA (`ejbca`)"): EjbcaOptions,
    ("README.md", "### Microsoft AD CS (`adcs`)"): AdcsOptions,
    ("README.md", "### EST (`est`)"): EstOptions,
    ("docs/ca/acme.md", "## Profile fields"): AcmeOptions,
    ("docs/ca/acme.md", "### `dns_options` for `azure`"): AzureDnsOptions,
    ("docs/ca/cfssl.md", "## Profile fields"): CfsslOptions,
    ("docs/ca/vault.md", "## Profile fields"): VaultOptions,
    ("docs/ca/ejbca.md", "## Profile fields"): EjbcaOptions,
    ("docs/ca/adcs.md", "## Profile fields"): AdcsOptions,
    ("docs/ca/est.md", "## Profile fields"): EstOptions,
    ("docs/ca/revocation.md", "## Profile fields"): RetirementOptions,
}
REQUIRED = object()


@dataclass(frozen=True, slots=True)
class Row:
    """One table row, for one of the fields it names.

    Attributes:
        field: the field's name.
        type: the ``type`` cell.
        default: the ``default`` cell, read as the mapping above says (``REQUIRED`` for ``required``).
    """

    field: str
    type: str
    default: object


def table_after(path: str, heading: str) -> list[Row]:
    """The rows of the first table after the line ``heading`` in ``path`` (before the next heading)."""
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    assert heading in lines, f"{path} has no heading {heading!r}"
    rows: list[Row] = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("#") or (rows and not line.startswith("|")):
            break
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "field" or set(cells[0]) <= {"-"}:
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        assert names, f"{path}: a row of {heading!r} names no field: {cells[0]!r}"
        rows.extend(Row(name, cells[1], _default(cells[2])) for name in names)
    assert rows, f"{path}: no table after {heading!r}"
    return rows


def _default(cell: str) -> object:
    if cell == "required":
        return REQUIRED
    literal = re.fullmatch(r"`([^`]*)`", cell)
    if literal is None:
        return None
    try:
        return json.loads(literal.group(1))
    except ValueError:
        return literal.group(1)


def type_word(hint: Any) -> str:
    """The ``type`` cell a field's type hint is documented with."""
    if get_origin(hint) in (Union, UnionType):
        (hint,) = (arg for arg in get_args(hint) if arg is not NoneType)
    if get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    if hint in (str, Path, Secret) or get_origin(hint) is Literal:
        return "string"
    words = {bool: "bool", int: "integer", float: "number"}
    if hint in words:
        return words[hint]
    return {tuple: "list of strings", Mapping: "object"}[get_origin(hint)]


def declared_default(options_class: type[Any], name: str) -> object:
    """A field's default as a table writes it: ``REQUIRED``, or the value (a tuple as a list, a mapping as a dict)."""
    option = next(option for option in fields(options_class) if option.name == name)
    if option.default is not MISSING:
        value = option.default
    elif option.default_factory is not MISSING:
        value = option.default_factory()
    else:
        return REQUIRED
    return list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, Mapping) else value


def test_every_adapter_has_an_options_class_and_a_readme_table() -> None:
    """Each adapter in the registry is mapped to its options class, and that class to a README table."""
    assert set(ADAPTER_OPTIONS) == set(ADAPTERS)
    readme_classes = {options_class for (path, _), options_class in TABLES.items() if path == "README.md"}
    assert set(ADAPTER_OPTIONS.values()) <= readme_classes


@pytest.mark.parametrize(("path", "heading"), sorted(TABLES), ids=lambda value: str(value))
def test_the_table_names_exactly_the_fields(path: str, heading: str) -> None:
    """Every field of the options class has a row, and every row names a field."""
    documented = [row.field for row in table_after(path, heading)]
    declared = [option.name for option in fields(TABLES[path, heading])]
    assert sorted(set(documented) - set(declared)) == [], "rows naming no field"
    assert sorted(set(declared) - set(documented)) == [], "fields without a row"
    assert len(documented) == len(set(documented)), "a field has two rows"


@pytest.mark.parametrize(("path", "heading"), sorted(TABLES), ids=lambda value: str(value))
def test_the_table_gives_each_fields_type_and_default(path: str, heading: str) -> None:
    """Each row's type and default are the options class's."""
    options_class = TABLES[path, heading]
    hints = get_type_hints(options_class, include_extras=True)
    for row in table_after(path, heading):
        assert row.type == type_word(hints[row.field]), f"{row.field}: type"
        assert row.default == declared_default(options_class, row.field), f"{row.field}: default"
