"""template.yaml as CloudFormation and SAM will take it: cfn-lint, `sam validate` (cfn-lint with
SAM's settings, and the SAM translator), and `sam build` of every function and layer for arm64
with the local interpreter (no container), into a temporary directory.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Final

import pytest

from tests.deploy.cfn_yaml import load, resources_of_type
from tests.deploy.tooling import (
    CACHE,
    EM_AARCH64,
    REGIONS,
    REPO,
    TEMPLATE,
    SamCli,
    elf_machine,
    run,
    venv_tool,
)

# Each layer's packages that the code imports, by layer directory
LAYER_IMPORTS: Final = {
    "layers/deps": {
        "aws-lambda-powertools": "aws_lambda_powertools",
        "pydantic": "pydantic",
        "pillow": "PIL",
        "requests": "requests",
        "jsonschema": "jsonschema",
    },
    "layers/imaging": {"numpy": "numpy", "opencv-python-headless": "cv2"},
}
# Lambda's limit on a function's code and layers together, unzipped
UNZIPPED_LIMIT_BYTES: Final = 250 * 1024 * 1024
PIN: Final = re.compile(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;#]+)")


@pytest.mark.parametrize("region", REGIONS)
def test_cfn_lint_passes(region: str) -> None:
    """Every rule, none ignored."""
    ran = run([venv_tool("cfn-lint"), "--format", "parseable", "--regions", region, "--",
               TEMPLATE])
    assert ran.returncode == 0 and not ran.output.strip(), ran.explain()


@pytest.mark.parametrize("region", REGIONS)
def test_sam_validate_lint_passes_offline(sam: SamCli, region: str) -> None:
    ran = sam.in_region(region).run("validate", "--lint", "--region", region,
                                    "--template-file", TEMPLATE, offline=True)
    assert ran.returncode == 0, ran.explain()
    assert f"{TEMPLATE} is a valid SAM Template" in ran.output, ran.explain()


@pytest.mark.parametrize("region", REGIONS)
def test_sam_translator_accepts_the_template_offline(
    sam: SamCli, tmp_path: Path, region: str
) -> None:
    """Plain `sam validate` (samconfig.toml turns --lint on, so an empty config turns it off):
    the SAM translator's own checks, with no credentials and no network."""
    config = tmp_path / "samconfig.toml"
    config.write_text("version = 0.1\n")
    ran = sam.in_region(region).run("validate", "--config-file", config, "--region", region,
                                    "--template-file", TEMPLATE, offline=True)
    assert ran.returncode == 0, ran.explain()
    assert "valid SAM Template. This is according to basic SAM Validation" in ran.output, (
        ran.explain()
    )


# ---------------------------------------------------------------------- sam build


@pytest.fixture(scope="module")
def built(sam: SamCli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` into a temporary directory. Its caches stay in .cache/deploy-check (SAM puts
    resolved dependencies under .aws-sam/deps of its working directory, and the index of its
    cache in build.toml beside the build directory), so a second run rebuilds only what changed.
    """
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    cache_dir = CACHE / "sam-build-cache"
    kept, beside = cache_dir / "build.toml", build_dir.parent / "build.toml"
    if kept.is_file():
        shutil.copyfile(kept, beside)
    ran = sam.run(
        "build", "--template-file", TEMPLATE, "--build-dir", build_dir,
        "--cache-dir", cache_dir, "--cached", "--parallel", cwd=CACHE / "sam-work",
    )
    assert ran.returncode == 0 and "Build Succeeded" in ran.output, ran.explain()
    if beside.is_file():
        shutil.copyfile(beside, kept)
    return build_dir


def _template() -> dict[str, Any]:
    return load(TEMPLATE)


def test_every_function_and_layer_is_built(built: Path) -> None:
    template = _template()
    functions = resources_of_type(template, "AWS::Serverless::Function")
    layers = resources_of_type(template, "AWS::Serverless::LayerVersion")
    built_template = load(built / "template.yaml")
    for logical_id, function in functions.items():
        module = function["Properties"]["Handler"].rsplit(".", 1)[0]
        assert (built / logical_id / f"{module}.py").is_file(), logical_id
        code_uri = built_template["Resources"][logical_id]["Properties"]["CodeUri"]
        assert (built / code_uri).resolve() == (built / logical_id).resolve()
    for logical_id in layers:
        content_uri = built_template["Resources"][logical_id]["Properties"]["ContentUri"]
        assert (built / content_uri / "python").is_dir(), logical_id


def _layer_dir(content_uri: str) -> str:
    template = _template()
    layers = resources_of_type(template, "AWS::Serverless::LayerVersion")
    (logical_id,) = [
        key for key, layer in layers.items()
        if layer["Properties"]["ContentUri"].rstrip("/") == content_uri
    ]
    return logical_id


def test_the_core_layer_holds_the_whole_pixelbatch_package(built: Path) -> None:
    source = REPO / "layers" / "core" / "pixelbatch"
    packaged = built / _layer_dir("layers/core") / "python" / "pixelbatch"
    expected = {p.relative_to(source) for p in source.rglob("*.py")}
    assert expected, "no source files found"
    assert {p.relative_to(packaged) for p in packaged.rglob("*.py")} == expected
    for relative in expected:
        assert (packaged / relative).read_bytes() == (source / relative).read_bytes(), relative


def _pins(content_uri: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / content_uri / "requirements.txt").read_text().splitlines():
        found = PIN.match(line.strip())
        if found:
            pins[found.group(1).lower().replace("_", "-")] = found.group(3)
    return pins


def _installed(site: Path) -> dict[str, str]:
    versions = {}
    for info in site.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        versions[name.lower().replace("_", "-")] = version
    return versions


@pytest.mark.parametrize("content_uri", sorted(LAYER_IMPORTS))
def test_the_package_layers_hold_their_pinned_packages(built: Path, content_uri: str) -> None:
    site = built / _layer_dir(content_uri) / "python"
    pins, imports = _pins(content_uri), LAYER_IMPORTS[content_uri]
    assert set(imports) <= set(pins)
    installed = _installed(site)
    for name, version in pins.items():
        assert installed.get(name) == version, (name, installed.get(name))
    for name, package in imports.items():
        assert (site / package / "__init__.py").is_file(), name


def test_only_the_item_worker_carries_the_imaging_layer() -> None:
    # Only ProcessItem runs pixels; the others would pay for 140 MB they never load
    imaging = _layer_dir("layers/imaging")
    functions = resources_of_type(_template(), "AWS::Serverless::Function")
    carriers = {logical_id for logical_id, function in functions.items()
                if {"Ref": imaging} in function["Properties"].get("Layers", [])}
    assert carriers == {"ProcessItemFunction"}


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_every_function_fits_lambdas_unzipped_size_limit(built: Path) -> None:
    template = _template()
    built_template = load(built / "template.yaml")["Resources"]
    layer_sizes = {
        logical_id: _size(built / built_template[logical_id]["Properties"]["ContentUri"])
        for logical_id in resources_of_type(template, "AWS::Serverless::LayerVersion")
    }
    shared = template["Globals"]["Function"].get("Layers", [])
    for logical_id, function in resources_of_type(template, "AWS::Serverless::Function").items():
        layers = [layer["Ref"] for layer in shared + function["Properties"].get("Layers", [])]
        total = _size(built / logical_id) + sum(layer_sizes[layer] for layer in layers)
        assert total < UNZIPPED_LIMIT_BYTES, (logical_id, total)


def test_native_code_in_the_layers_is_built_for_arm64(built: Path) -> None:
    """The functions run on arm64 (Graviton): every compiled extension must be aarch64."""
    template = _template()
    assert template["Globals"]["Function"]["Architectures"] == ["arm64"]
    libraries = [p for p in built.rglob("*.so") if p.is_file()]
    assert any("pydantic_core" in str(p) for p in libraries), "no compiled pydantic_core found"
    wrong = [str(p.relative_to(built)) for p in libraries if elf_machine(p) != EM_AARCH64]
    assert not wrong, f"not aarch64: {wrong[:10]}"


@pytest.mark.parametrize("content_uri", ["layers/core", "layers/deps", "layers/imaging"])
def test_the_layers_carry_bytecode_for_the_runtime(built: Path, content_uri: str) -> None:
    """/opt is read-only on Lambda: a module without its .pyc is compiled at every cold start."""
    site = built / _layer_dir(content_uri) / "python"
    sources = [p for p in site.rglob("*.py") if p.is_file()]
    assert sources
    runtime = _template()["Globals"]["Function"]["Runtime"]  # e.g. python3.11 -> cpython-311
    tag = "cpython-" + runtime.removeprefix("python").replace(".", "")
    missing = [str(p.relative_to(site)) for p in sources
               if not (p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc").is_file()]
    assert not missing, missing[:10]
