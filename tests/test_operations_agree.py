"""Every declared operation's faces agree (architecture issue: operations declared once): the function's
keyword arguments, the CLI command's options and the HTTP body's OpenAPI schema name the same options with
the same defaults, and the CLI and the HTTP API refuse the same bad values."""

from __future__ import annotations

import inspect

import pytest
import typer
from typer.testing import CliRunner

import glasslab.cli.main  # noqa: F401  (registers every command)
from glasslab.app.server import OPERATIONS as SERVER_OPERATIONS
from glasslab.cli.app import app
from glasslab.cli.derived import COMMAND_WORDS, COMMON, cli_fields, cli_metadata, draws, is_argument, pair_parameters
from glasslab.errors import InputError
from glasslab.operations import OPERATIONS, operation
from tests.test_server_helpers import client
from tests.tiny import tiny_model

SPECS = sorted(OPERATIONS.values(), key=lambda spec: spec.name)
IDS = [spec.name for spec in SPECS]
HTTP_SPECS = [spec for spec in SPECS if spec.http]
# Flags every command has besides its declared options (the model it loads, --json, --out).
COMMON_PARAMS = {*COMMON, "out_file"}
# Flags that change only how a result is shown in the terminal, per command.
DISPLAY = {"predict": {"losses"}, "head-roles": {"top"}, "ablation-sweep": {"top"}, "path-patch": {"top"}}


def _declared_default(field):
    return None if field.is_required() else field.get_default(call_default_factory=True)


@pytest.fixture(scope="module")
def openapi(tmp_path_factory):
    return client(tiny_model("gpt2"), tmp_path_factory.mktemp("agree")).app.openapi()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_the_function_takes_exactly_the_declared_options_with_the_same_defaults(spec):
    parameters = {n: p for n, p in spec.keyword_parameters().items() if n not in spec.python_only}
    fields = {n: f for n, f in spec.options.model_fields.items() if n not in spec.server_only}
    assert set(parameters) == set(fields)
    for name, field in fields.items():
        default = parameters[name].default
        if default is not inspect.Parameter.empty:
            assert _declared_default(field) == (list(default) if isinstance(default, tuple) else default), name
        else:
            assert field.is_required() or _declared_default(field) is None, name
    assert set(spec.python_only) <= set(spec.keyword_parameters())  # no stale names


def _command_params(spec) -> dict:
    command = typer.main.get_command(app)
    for word in COMMAND_WORDS[spec.name]:  # ("compare", "models") for a sub-command
        command = command.commands[word]
    return {p.name: p for p in command.params if p.name != "help"}


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_the_cli_command_offers_the_declared_options(spec):
    params = _command_params(spec)
    pairs = {n: pair_parameters(cli_metadata(f).pair) for n, f in cli_fields(spec).items() if cli_metadata(f).pair}
    expected = set(cli_fields(spec)) - set(pairs) | {p for two in pairs.values() for p in two}
    # An operation that loads the models its own options name has no shared --model (it may declare one).
    expected |= (COMMON_PARAMS - ({"model"} if spec.loads_models else set())) | DISPLAY.get(spec.name, set())
    if not draws(spec.result):
        expected.discard("out_file")
    assert set(params) == expected
    for name, field in cli_fields(spec).items():
        if name in pairs:  # two repeatable flags, zipped into the declared pairs
            assert all(params[p].multiple and not params[p].required for p in pairs[name]), name
            continue
        param = params[name]
        assert param.required == field.is_required(), name
        default = _declared_default(field)
        given_as_text = cli_metadata(field).whole  # one text (9.1,10.0): None for none given, too
        assert param.default == (None if default == [] or given_as_text else default), name
        assert (param.param_type_name == "argument") == is_argument(name, field), name
        assert (field.description or "") in (getattr(param, "help", None) or ""), name


@pytest.mark.parametrize("spec", HTTP_SPECS, ids=[spec.name for spec in HTTP_SPECS])
def test_the_http_body_is_the_declared_options(spec, openapi):
    schema, summary = _http_body(spec, openapi)
    fields = {n: f for n, f in spec.options.model_fields.items() if n not in spec.local_only}
    assert set(schema["properties"]) == set(fields)  # a request never names a file on the server
    assert set(schema.get("required", [])) == {n for n, f in fields.items() if f.is_required()}
    for name, field in fields.items():
        prop = schema["properties"][name]
        if not field.is_required() and field.default_factory is None:  # a factory's value is not in the schema
            assert prop.get("default") == field.default, name
        assert prop.get("description") == field.description, name
    assert summary.startswith(spec.summary)  # long ones add "prefer POST /api/jobs"


def _http_body(spec, openapi) -> tuple[dict, str]:
    """The body's JSON schema and the summary, from OpenAPI; for a job-only operation (minutes of work: only
    POST /api/jobs runs it, so it has no route of its own) from the server's operation."""
    route = openapi["paths"].get(f"/api/{spec.name}", {}).get("post")
    if route is None:
        (op,) = [op for op in SERVER_OPERATIONS if op.name == spec.name]
        assert op.job_only, spec.name
        return op.schema.model_json_schema(), op.summary
    reference = route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return openapi["components"]["schemas"][reference.rsplit("/", 1)[-1]], route["summary"]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_the_cli_and_python_refuse_the_same_out_of_range_value(spec):
    # A bound declared once is a bound on every face (the HTTP body is the same model): the first bounded
    # integer option, one past its bound, is refused before any model loads.
    options = {n: f for n, f in cli_fields(spec).items() if not is_argument(n, f)}  # flags, not positional
    bounded = [(n, m.le) for n, f in options.items() for m in f.metadata if getattr(m, "le", None)]
    if not bounded:
        pytest.skip(f"{spec.name} declares no bounded option")
    name, bound = bounded[0]
    values, words = _required(spec)
    with pytest.raises(InputError, match=rf"^{name} must be <= {bound}, got {bound + 1}$"):
        spec.validate({**values, name: bound + 1})
    flag = max((o for o in _command_params(spec)[name].opts if o.startswith("--")), key=len)
    model = [] if spec.loads_models else ["--model", "/nowhere"]
    result = CliRunner().invoke(app, [*COMMAND_WORDS[spec.name], *words, flag, str(bound + 1), *model])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {flag} must be <= {bound}, got {bound + 1}"


# Valid values of required options that are not prompts, in Python and on the command line.
REQUIRED_LISTS = {
    "neurons": ([(0, 0)], ["--neuron", "0.0"]),
    "layer": (0, ["0"]),
    "neuron": (0, ["0"]),
    "feature": (0, ["0"]),
    "features": ([0], ["--feature", "0"]),
    "sae": ("store:mine", ["--sae", "store:mine"]),
}


def _required(spec) -> tuple[dict, list[str]]:
    """Valid values for the required options (prompts: "the cat"), and the same as command-line words."""
    values, words = {}, []
    for name, field in cli_fields(spec).items():
        if field.is_required() and name in REQUIRED_LISTS:
            values[name], more = REQUIRED_LISTS[name]
            words += more
        elif field.is_required():
            values[name] = "the cat"
            words += ["the cat"] if is_argument(name, field) else [f"--{name.replace('_', '-')}", "the cat"]
    return values, words


def test_operations_without_http_have_no_route(openapi):
    # They need a file on this machine or load a second model: the server offers no endpoint for them.
    local = [spec.name for spec in SPECS if not spec.http]
    assert not [name for name in local if f"/api/{name}" in openapi["paths"]]


def test_an_unknown_operation_is_named_with_the_known_ones():
    with pytest.raises(InputError, match=r"known: .*predict"):
        operation("predikt")


def test_a_renamed_command_still_runs_under_its_old_name_with_a_warning():
    renamed = CliRunner().invoke(app, ["ablate-sweep", "the cat", "--batch-size", "0", "--model", "/nowhere"])
    assert renamed.exit_code == 2 and "deprecated" in renamed.output.lower()
    assert "--batch-size must be >= 1, got 0" in renamed.output
