"""aiohttp-discovery as another team gets it: built, installed from its wheel, used.

- The sdist and the wheel are built with the project's uv (the wheel from the sdist, as
  ``uv build`` does), and their contents checked: ``py.typed``, every module and nothing
  else (no tests, no examples), the metadata's version and requirements equal to
  pyproject.toml's and to ``aiohttp_discovery.__version__``.
- The wheel is installed into a fresh virtualenv outside the repository, its
  dependencies resolved from PyPI: the newest versions its ranges allow (``latest``),
  and the lowest (``lowest``: the ranges passed as direct requirements with
  ``--resolution lowest-direct``, then the wheel with ``--no-deps``), so a floor in
  pyproject.toml cannot claim what the code does not support.
- The example shop (examples/shop/shop.py, copied out of the repository) runs from each
  virtualenv, with nothing of the repository importable, against loopback ``orders``
  replicas (127.0.0.2-127.0.0.4, one answering in 1 s) found through DNS (the Cloud Map
  stand-in serves ``orders.internal``); the tests call the shop and check its answers.
- The library's own tests (apps/aiohttp-discovery/tests/, which import only the
  library, aiohttp, pytest and the standard library) run in the lowest virtualenv.

Both virtualenvs are made once per session; uv's cache makes a repeat take seconds.
Without PyPI these tests skip, saying so (never pass without having run).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import HeaderParser
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from aiohttp import web
from packaging.requirements import Requirement
from packaging.specifiers import Specifier

from local.dns import CloudMapStandIn
from local.dns import Registry as DnsRegistry
from tests.apps.support import free_port_on
from tests.local.ports import free_port
from tests.uvtool import ROOT, uv

LIBRARY = ROOT / "apps" / "aiohttp-discovery"
SOURCE = LIBRARY / "src" / "aiohttp_discovery"
EXAMPLE = LIBRARY / "examples" / "shop"
LIBRARY_TESTS = LIBRARY / "tests"

ORDERS_REPLICAS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
SLOW_REPLICA = "127.0.0.4"
SLOW_SECONDS = 1.0
EXPORT_BYTES = 10 * 1024 * 1024
EXPORT_PIECE = bytes(range(256)) * 1024  # 256 KiB; the export is 40 of them
PYPI = "https://pypi.org/simple/aiohttp/"


def project() -> dict[str, object]:
    with (LIBRARY / "pyproject.toml").open("rb") as f:
        found = tomllib.load(f)["project"]
    assert isinstance(found, dict)
    return found


def dependencies() -> list[str]:
    found = project()["dependencies"]
    assert isinstance(found, list)
    return [str(d) for d in found]


def source_version() -> str:
    """``__version__`` as aiohttp_discovery/__init__.py assigns it (read, not imported)."""
    tree = ast.parse((SOURCE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [
            "__version__"
        ]:
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    pytest.fail("aiohttp_discovery/__init__.py assigns no __version__")


def outside_environment() -> dict[str, str]:
    """The environment of a process that must see nothing of this repository or .venv."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    drop |= {"UV_OFFLINE", "PYTHONDONTWRITEBYTECODE"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def run_uv_online(*args: str, cwd: Path, timeout: float = 300) -> str:
    """The project's uv, allowed to reach PyPI; its stderr, or the test fails with it."""
    result = subprocess.run(
        [uv(), *args],
        cwd=cwd,
        env=outside_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"uv {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


# -- PyPI, the build, the virtualenvs -------------------------------------------------


@pytest.fixture(scope="session")
def pypi() -> None:
    try:
        with urllib.request.urlopen(PYPI, timeout=10) as answer:
            answer.read(1)
    except (OSError, urllib.error.URLError) as exc:
        pytest.skip(f"PyPI unreachable ({exc}): cannot build or install aiohttp-discovery")


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="session")
def built(pypi: None, tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    # No --wheel/--sdist: uv builds the sdist, then the wheel from the unpacked sdist,
    # so the wheel proves the sdist holds everything needed.
    run_uv_online("build", "--quiet", "--out-dir", str(out), str(LIBRARY), cwd=out)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Built(sdist, wheel)


@dataclass(frozen=True)
class Venv:
    kind: str
    root: Path
    workdir: Path
    """A directory outside the repository, where its processes run."""

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args],
            cwd=self.workdir,
            env=outside_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def installed(self) -> dict[str, str]:
        listing = run_uv_online(
            "pip", "list", "--format", "json", "--python", str(self.python), cwd=self.workdir
        )
        start = listing.index("[")
        packages = json.loads(listing[start : listing.rindex("]") + 1])
        return {p["name"].lower(): p["version"] for p in packages}


def new_venv(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    home = tmp_path_factory.mktemp(f"venv-{kind}")
    assert not home.resolve().is_relative_to(ROOT)
    venv = Venv(kind, home / "venv", home / "work")
    venv.workdir.mkdir()
    run_uv_online("venv", "--quiet", "--python", sys.executable, str(venv.root), cwd=home)
    return venv


@pytest.fixture(scope="session")
def latest(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel with the newest dependencies its ranges allow, from PyPI."""
    venv = new_venv("latest", tmp_path_factory)
    py = str(venv.python)
    run_uv_online("pip", "install", "--python", py, str(built.wheel), cwd=venv.workdir)
    return venv


def pytest_requirement() -> str:
    """The repository's pytest, pinned, so lowest-direct lowers only the library's floors."""
    return f"pytest=={pytest.__version__}"


@pytest.fixture(scope="session")
def lowest(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel with the lowest versions its metadata allows (its own ranges, lowest-direct)."""
    venv = new_venv("lowest", tmp_path_factory)
    py = str(venv.python)
    run_uv_online(
        "pip",
        "install",
        "--python",
        py,
        "--resolution",
        "lowest-direct",
        *dependencies(),
        pytest_requirement(),
        cwd=venv.workdir,
    )
    run_uv_online("pip", "install", "--python", py, "--no-deps", str(built.wheel), cwd=venv.workdir)
    return venv


@pytest.fixture(scope="session", params=["latest", "lowest"])
def venv(request: pytest.FixtureRequest) -> Venv:
    found = request.getfixturevalue(request.param)
    assert isinstance(found, Venv)
    return found


# -- the artefacts ---------------------------------------------------------------------


def test_the_wheel_holds_the_package_typed_and_nothing_else(built: Built) -> None:
    version = str(project()["version"])
    assert built.wheel.name == f"aiohttp_discovery-{version}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    info = f"aiohttp_discovery-{version}.dist-info/"
    assert "aiohttp_discovery/py.typed" in names, "py.typed: users' type checkers need it"
    modules = {f"aiohttp_discovery/{p.name}" for p in SOURCE.glob("*.py")}
    assert {n for n in names if n.endswith(".py")} == modules
    strays = [n for n in names if not n.startswith(("aiohttp_discovery/", info))]
    assert not strays, f"the wheel holds more than the package: {strays}"
    tests = [n for n in names if any(p in {"tests", "conftest.py"} for p in n.split("/"))]
    assert not tests
    assert not [n for n in names if "/test_" in n]
    assert {f"{info}METADATA", f"{info}WHEEL", f"{info}RECORD"} <= names


def test_the_wheel_metadata_is_the_pyproject(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        version = str(project()["version"])
        metadata = HeaderParser().parsestr(
            wheel.read(f"aiohttp_discovery-{version}.dist-info/METADATA").decode()
        )
    assert metadata["Name"] == "aiohttp-discovery"
    assert metadata["Version"] == version == source_version()
    assert metadata["Requires-Python"] == project()["requires-python"]
    declared = {str(Requirement(d)) for d in dependencies()}
    assert {str(Requirement(r)) for r in metadata.get_all("Requires-Dist") or []} == declared
    assert "Typing :: Typed" in (metadata.get_all("Classifier") or [])


def test_the_sdist_builds_the_same_package(built: Built) -> None:
    version = str(project()["version"])
    top = f"aiohttp_discovery-{version}"
    with tarfile.open(built.sdist) as sdist:
        names = set(sdist.getnames())
        pkg_info = sdist.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        metadata = HeaderParser().parsestr(pkg_info.read().decode())
    assert metadata["Version"] == version
    for needed in ("pyproject.toml", "README.md", "src/aiohttp_discovery/py.typed"):
        assert f"{top}/{needed}" in names
    assert {f"{top}/src/aiohttp_discovery/{p.name}" for p in SOURCE.glob("*.py")} <= names


# -- the installs ----------------------------------------------------------------------


def test_the_installed_library_is_the_wheel_and_the_repository_is_out_of_reach(
    venv: Venv,
) -> None:
    result = venv.run(
        "-c",
        "import importlib.metadata as m, aiohttp_discovery as d;"
        "print(d.__version__, m.version('aiohttp-discovery'), d.__file__)",
    )
    assert result.returncode == 0, result.stderr
    module_version, dist_version, where = result.stdout.split()
    assert module_version == dist_version == str(project()["version"])
    assert Path(where).is_relative_to(venv.root), f"{where}: not the installed wheel"
    for name in ("apps", "tests", "local"):
        result = venv.run("-c", f"import {name}")
        assert result.returncode != 0, f"`import {name}` works outside the repository"
        assert f"No module named '{name}'" in result.stderr


def test_the_lowest_install_is_at_the_declared_floors(lowest: Venv) -> None:
    installed = lowest.installed()
    for dependency in dependencies():
        requirement = Requirement(dependency)
        (floor,) = [s.version for s in requirement.specifier if s.operator == ">="]
        assert Specifier(f"=={floor}").contains(installed[requirement.name.lower()]), (
            f"{requirement.name}: {installed[requirement.name.lower()]}, not the floor {floor}"
        )
    check = subprocess.run(
        [uv(), "pip", "check", "--python", str(lowest.python)],
        cwd=lowest.workdir,
        env=outside_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_library_tests_pass_at_the_floors(lowest: Venv) -> None:
    tests = sorted(LIBRARY_TESTS.glob("test_*.py"))
    if not tests:
        pytest.skip(f"{LIBRARY_TESTS.relative_to(ROOT)} holds no test_*.py yet")
    copy = lowest.workdir / "library-tests"
    shutil.copytree(LIBRARY_TESTS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    result = lowest.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(copy), timeout=300)
    assert result.returncode == 0, f"at the floors:\n{result.stdout[-6000:]}\n{result.stderr}"


# -- the orders upstream ---------------------------------------------------------------


@dataclass
class Orders:
    """Three loopback replicas of an ``orders`` service and the DNS that names them."""

    port: int
    dns: CloudMapStandIn
    created: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)
    """(replica, X-Request-Id, cart) per order created."""

    @property
    def url(self) -> str:
        return f"http://orders.internal:{self.port}/"

    @property
    def nameserver(self) -> str:
        return f"{self.dns.host}:{self.dns.port}"


def orders_app(ip: str, orders: Orders) -> web.Application:
    delay = SLOW_SECONDS if ip == SLOW_REPLICA else 0.0

    async def create(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        cart = await request.json()
        if not isinstance(cart.get("quantity"), int) or cart["quantity"] < 1:
            return web.json_response({"error": "quantity must be a positive integer"}, status=422)
        orders.created.append((ip, request.headers.get("X-Request-Id", ""), cart))
        order = {"id": len(orders.created), "sku": cart["sku"], "quantity": cart["quantity"]}
        return web.json_response(order, status=201)

    async def price(request: web.Request) -> web.Response:
        # Every replica is slow for a "slow-" sku: an upstream whose tasks all take 1 s.
        await asyncio.sleep(SLOW_SECONDS if request.query["sku"].startswith("slow-") else delay)
        return web.json_response({"sku": request.query["sku"], "cents": 1999, "replica": ip})

    async def export(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        response.content_length = EXPORT_BYTES
        await response.prepare(request)
        for _ in range(EXPORT_BYTES // len(EXPORT_PIECE)):
            await response.write(EXPORT_PIECE)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/orders", create)
    app.router.add_get("/prices", price)
    app.router.add_get("/export", export)
    return app


@pytest.fixture(scope="session")
def orders() -> Iterator[Orders]:
    registry = DnsRegistry()
    dns = CloudMapStandIn(registry, host="127.0.0.1", port=free_port("127.0.0.1", udp_too=True))
    found = Orders(free_port_on(ORDERS_REPLICAS), dns)
    loop = asyncio.new_event_loop()
    runners: list[web.AppRunner] = []

    async def start() -> None:
        for ip in ORDERS_REPLICAS:
            runner = web.AppRunner(orders_app(ip, found), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, ip, found.port).start()
            runners.append(runner)

    thread = threading.Thread(target=loop.run_forever, name="orders", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    dns.start()
    for ip in ORDERS_REPLICAS:
        registry.register("orders", IPv4Address(ip))
    try:
        yield found
    finally:
        dns.stop()

        async def stop() -> None:
            for runner in runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


# -- the shop, run from each virtualenv ------------------------------------------------


@dataclass(frozen=True)
class Shop:
    url: str
    venv: Venv
    log: Path


def call(
    url: str, *, body: object = None, headers: dict[str, str] | None = None, timeout: float = 20
) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="session")
def shop(venv: Venv, orders: Orders) -> Iterator[Shop]:
    """examples/shop/shop.py, copied out of the repository, run by the virtualenv's python."""
    folder = venv.workdir / "shop"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port("127.0.0.1")
    log = venv.workdir / "shop.log"
    environment = outside_environment() | {
        "ORDERS_URL": orders.url,
        "ORDERS_NAMESERVERS": orders.nameserver,
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(venv.python), "shop.py"],
            cwd=folder,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    found = Shop(f"http://127.0.0.1:{port}", venv, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"the shop exited {process.returncode}:\n{log.read_text()}")
            try:
                if call(f"{found.url}/health", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the shop did not start in 30 s:\n{log.read_text()}")
            time.sleep(0.05)
        yield found
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_checkout_creates_one_order_and_prices_it(shop: Shop, orders: Orders) -> None:
    request_id = f"checkout-{shop.venv.kind}"
    cart = {"sku": "b-42", "quantity": 2}
    status, headers, body = call(
        f"{shop.url}/checkout", body=cart, headers={"X-Request-Id": request_id}
    )
    assert status == 201, body
    assert headers["X-Request-Id"] == request_id
    answer = json.loads(body)
    assert answer["order"]["sku"] == "b-42"
    assert answer["order"]["quantity"] == 2
    assert answer["price"]["sku"] == "b-42"
    assert answer["price"]["cents"] == 1999
    # A POST is not repeated: exactly one replica created it, with the caller's id.
    mine = [o for o in orders.created if o[1] == request_id]
    assert len(mine) == 1
    assert mine[0][0] in ORDERS_REPLICAS
    assert mine[0][2] == cart


def test_the_upstreams_4xx_reaches_the_caller(shop: Shop, orders: Orders) -> None:
    before = len(orders.created)
    status, _, body = call(f"{shop.url}/checkout", body={"sku": "b-42", "quantity": 0})
    assert status == 422
    assert json.loads(body) == {"error": "quantity must be a positive integer"}
    assert len(orders.created) == before
    status, _, body = call(f"{shop.url}/checkout", body=["not", "a", "cart"])
    assert status == 400


def test_prices_succeed_from_replicas_answering_in_one_second(shop: Shop) -> None:
    """With the defaults a 1 s answer is a good one: every call succeeds, whether one
    replica (127.0.0.4) or all of them (a "slow-" sku) take 1 s, and no replica is
    ejected for being slow (hedges may still answer from a fast one)."""
    skus = [f"p-{i}" for i in range(18)] + [f"slow-{i}" for i in range(6)]

    def timed(sku: str) -> tuple[float, tuple[int, dict[str, str], bytes]]:
        started = time.monotonic()
        answer = call(f"{shop.url}/prices?sku={sku}")
        return time.monotonic() - started, answer

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(timed, skus, timeout=60))
    seen: set[str] = set()
    for sku, (took, (status, headers, body)) in zip(skus, results, strict=True):
        assert status == 200, body
        answer = json.loads(body)
        assert answer["sku"] == sku
        assert headers["X-Upstream-Address"].startswith(answer["replica"])
        seen.add(answer["replica"])
        if sku.startswith("slow-"):
            assert took >= SLOW_SECONDS
    assert len(seen) >= 2, f"all answers from {seen}: the shop does not balance"
    status, _, metrics = call(f"{shop.url}/metrics")
    assert status == 200
    text = metrics.decode()
    assert "shop_orders_requests_total" in text
    ejected = [
        line
        for line in text.splitlines()
        if line.startswith("shop_orders_ejected{") and not line.endswith(" 0.0")
    ]
    assert not ejected, ejected


def test_a_10_mib_export_streams_through_the_shop(shop: Shop) -> None:
    expected = hashlib.sha256(EXPORT_PIECE * (EXPORT_BYTES // len(EXPORT_PIECE))).hexdigest()
    started = time.monotonic()
    status, headers, body = call(f"{shop.url}/export", timeout=30)
    assert status == 200
    assert headers["Content-Type"].startswith("application/x-ndjson")
    assert headers.get("Transfer-Encoding") == "chunked"  # relayed, not buffered whole
    assert len(body) == EXPORT_BYTES
    assert hashlib.sha256(body).hexdigest() == expected
    assert time.monotonic() - started < 15
