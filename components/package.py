"""The component package (docs/package.md): which components it serves, under which name and
version. components/__main__.py, the file Pulumi runs, hands them to `component_provider_host`,
which infers the schema from their type annotations (components/schema.json is the committed
copy; tests/infra/test_package.py keeps the two equal).
"""

import pulumi
from pulumi.provider.experimental import component_provider_host

from components.alarms import Alarms
from components.autoscaling import ServiceAutoscaling
from components.dashboard import Dashboard
from components.domain import PublicDomain
from components.entry import PublicEntry
from components.image import ServiceImage
from components.network import Network
from components.platform import Platform
from components.proxy_alarms import ProxyAlarms
from components.running_tasks import RunningTasksAlarm
from components.service import DiscoverableService

# The package's name: the first part of every type token a consumer uses
# (`fargate-service-discovery:index:DiscoverableService`), and the name of its plugin.
NAME = "fargate-service-discovery"
# The package's version, here and nowhere else: the schema carries it, and a release is the
# repository tag `v<VERSION>` (tests/infra/test_package.py checks the schema and the docs).
VERSION = "0.1.0"

# Every ComponentResource defined in components/ (tests/infra/test_package.py checks).
COMPONENTS: list[type[pulumi.ComponentResource]] = [
    Network,
    Platform,
    ServiceImage,
    DiscoverableService,
    ServiceAutoscaling,
    PublicEntry,
    PublicDomain,
    Alarms,
    RunningTasksAlarm,
    ProxyAlarms,
    Dashboard,
]


def serve(served: list[type[pulumi.ComponentResource]]) -> None:
    """Serve `served` over gRPC until the engine stops the process. The first line on stdout
    is the port (the provider protocol); the engine's address is the first argument."""
    component_provider_host(served, NAME, version=VERSION)
