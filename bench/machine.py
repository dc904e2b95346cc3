"""What a benchmark ran on, said the same way by every benchmark in bench/: the CPU and
the cores this process may use, the GPU, the versions of the libraries that did the work,
the load when it started, the date.

Versions come from the installed packages' metadata, so that describing a machine imports
nothing; the GPU and torch's thread count are told when the benchmark has imported torch
(a benchmark without torch does not pay its import, seconds, to say it has no GPU).
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or what the platform says where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def available_cores() -> int:
    """The cores this process may run on (its affinity: a batch job's share, not the host's
    count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _gpu() -> str | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None  # not looked for
    if not torch.cuda.is_available():
        return "none"
    props = torch.cuda.get_device_properties(0)
    return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"


@dataclass(frozen=True)
class Machine:
    host: str
    cpu: str
    cores: int  # available to this process
    cpu_count: int  # the host's
    gpu: str | None  # None: not looked for (torch not imported)
    torch_threads: int | None  # torch's intra-op threads; None without torch
    versions: dict[str, str] = field(default_factory=dict)  # packages, then Python
    load: tuple[float, ...] = ()  # 1, 5 and 15 min load averages at the start
    when: str = ""  # UTC

    def line(self) -> str:
        """One line, for a benchmark's header."""
        cores = f"{self.cores} cores available"
        if self.cpu_count != self.cores:
            cores += f" of {self.cpu_count}"
        threads = f", torch threads {self.torch_threads}" if self.torch_threads else ""
        gpu = f"; GPU: {self.gpu}" if self.gpu is not None else ""
        versions = ", ".join(f"{name} {version}" for name, version in self.versions.items())
        load = ", ".join(f"{v:.2f}" for v in self.load)
        return (
            f"{self.when}, {self.host}: {self.cpu}, {cores}{threads}{gpu}; {versions}; "
            f"load average at start {load}"
        )

    def lines(self) -> list[str]:
        """A Markdown list (CPU, GPU, versions and date), for a report's head."""
        versions = ", ".join(f"{name} {version}" for name, version in self.versions.items())
        return [
            f"- CPU: {self.cpu}, {self.cores} cores available",
            f"- GPU: {self.gpu or 'not looked for'}",
            f"- {versions}, {self.when}",
        ]


def describe(packages: tuple[str, ...] = ("torch",)) -> Machine:
    """This machine now, with the versions of ``packages`` (distribution names)."""
    torch = sys.modules.get("torch")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    return Machine(
        host=platform.node() or "host",
        cpu=cpu_model(),
        cores=available_cores(),
        cpu_count=os.cpu_count() or 1,
        gpu=_gpu(),
        torch_threads=torch.get_num_threads() if torch is not None else None,
        versions={name: _version(name) for name in packages}
        | {"Python": platform.python_version()},
        load=tuple(load),
        when=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
