#!/usr/bin/env python3
"""Footprint of hostwatch-agent side by side with Prometheus node_exporter and collectd.

What it is
    A measurement, not a test: it runs the three programs at the same time on this machine, each
    producing one sample of the host's metrics per second, measures them the same way over the
    same window, and prints a table of figures with the agent's SPEC targets and the ratios
    node_exporter / agent and collectd / agent. It never fails because a figure is high; it exits
    non-zero only when something could not be measured.

How to run it (as root, from anywhere; it finds the repository from its own path)
    python3 bench/agent_footprint.py [--seconds 90]

    --seconds   length of the measured window (default 60, at least 10); a 5 s warm-up before
                it is not counted.

What it does
    1. Installs prometheus-node-exporter and collectd-core from Debian if missing.
    2. Builds hostwatch-agent and hostwatch-collector with `cargo build --release` (into
       $CARGO_TARGET_DIR when set, else the repository's target/).
    3. Starts, on loopback only and from a private temporary directory: a collector (no self
       monitoring, so every sample it counts is the agent's), the agent at --interval 1s, its own
       node_exporter scraped once per second, and its own collectd at Interval 1 sending with its
       network plugin to a UDP socket this script listens on. Packaged services, if any run, are
       never measured: only the PIDs this script started are.
    4. Measures for each program: VmRSS (max and final), CPU (utime+stime delta over the window),
       bytes per sample on the wire, and the size of its binaries on disk.
    5. Stops everything it started and removes its temporary directory, also on Ctrl-C.

BENCHMARKS.md explains each figure and keeps the results of the last recorded run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NODE_EXPORTER = Path("/usr/bin/prometheus-node-exporter")
COLLECTD = Path("/usr/sbin/collectd")
COLLECTD_PLUGIN_DIR = Path("/usr/lib/collectd")
COLLECTD_TYPES_DB = Path("/usr/share/collectd/types.db")

# The metric set of the agent, as collectd plugins. `thermal` is often missing in VMs and
# containers; a plugin that does not load is left out rather than failing the run.
COLLECTD_PLUGINS = [
    "cpu", "load", "memory", "swap", "interface", "df", "disk", "processes", "uptime", "thermal",
]

WARMUP_S = 5.0
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")

# SPEC.md, "Performance targets": the agent at 1 s.
TARGET_RSS_MIB = 4.0
TARGET_CPU_S_PER_H = 3.6  # 0.1 % of one core
TARGET_BYTES_PER_SAMPLE = 300
TARGET_BINARY_MIB = 4.0


class BenchError(Exception):
    """Something could not be started or measured; the message says what."""


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class Program:
    """One process this script started, and what was measured of it."""

    name: str
    proc: subprocess.Popen
    log: Path
    rss_kib: list[int] = field(default_factory=list)
    ticks_start: int = 0
    ticks_end: int = 0
    threads_start: dict[int, tuple[str, int]] = field(default_factory=dict)
    threads_end: dict[int, tuple[str, int]] = field(default_factory=dict)
    status_end: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} exited with status {self.proc.returncode}; its output:\n"
                + tail(self.log)
            )


STARTED: list[Program] = []


def start(name: str, argv: list[str], tmp: Path) -> Program:
    """Starts a program with its output in a log file (a file never blocks it like a full pipe
    would) and in its own session, so a Ctrl-C reaches only this script, which stops it."""
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    program = Program(name, proc, log)
    STARTED.append(program)
    return program


def stop_all() -> None:
    """SIGTERM every started process, newest first (the agent before its collector), then
    SIGKILL whatever has not exited after a few seconds."""
    for program in reversed(STARTED):
        if program.proc.poll() is None:
            program.proc.terminate()
    deadline = time.monotonic() + 5
    for program in reversed(STARTED):
        try:
            program.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            program.proc.kill()
            program.proc.wait()
    STARTED.clear()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def wait_for(what: str, predicate, timeout: float, programs: list[Program]):
    """Polls `predicate` until it returns something truthy; fails early if a program died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for program in programs:
            program.check_alive()
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    """A free TCP port on loopback for programs that cannot be told to pick one and report it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# /proc


def proc_status(pid: int) -> dict[str, str]:
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    return status


def kib(status: dict[str, str], key: str) -> int:
    return int(status.get(key, "0 kB").split()[0])


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads, living and dead), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def thread_ticks(pid: int) -> dict[int, tuple[str, int]]:
    """utime + stime of each living thread, by thread id, with the thread's name."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        threads[int(task.name)] = (name, int(fields[11]) + int(fields[12]))
    return threads


def busiest_thread(program: Program) -> str:
    """The thread that used the most CPU in the window, and its share of the process's."""
    deltas = [(ticks - program.threads_start.get(tid, (name, 0))[1], name)
              for tid, (name, ticks) in program.threads_end.items()]
    total = program.ticks_end - program.ticks_start
    if not deltas or total <= 0:
        return "-"
    ticks, name = max(deltas)
    return f"{name} {100 * ticks / total:.0f}%"


def mapped_files(pid: int, under: Path) -> set[Path]:
    """Files under `under` mapped into the process: the shared objects it really loaded."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith(str(under) + "/"):
            found.add(Path(parts[5]))
    return found


def elf_has_symtab(path: Path) -> bool:
    """Whether a 64-bit little-endian ELF file still has a .symtab (is not stripped)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    names_off, = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)
    for i in range(shnum):
        name_idx, = struct.unpack_from("<I", data, shoff + i * shentsize)
        end = data.index(b"\0", names_off + name_idx)
        if data[names_off + name_idx:end] == b".symtab":
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Setup


def install_peers() -> None:
    missing = [pkg for pkg, path in
               (("prometheus-node-exporter", NODE_EXPORTER), ("collectd-core", COLLECTD))
               if not path.exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise BenchError(f"{', '.join(missing)} missing and not root: run this script as root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    print(f"installing {' '.join(missing)} ...", flush=True)
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL, check=False)
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            raise BenchError(f"could not install {' '.join(missing)} with apt-get")


def build() -> tuple[Path, Path]:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo/bin/cargo")
    print("building hostwatch-agent and hostwatch-collector (release) ...", flush=True)
    result = subprocess.run([cargo, "build", "--release", "-p", "agent", "-p", "collector"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise BenchError("cargo build --release failed:\n" + result.stderr[-4000:])
    agent, collector = target / "release/hostwatch-agent", target / "release/hostwatch-collector"
    for binary in (agent, collector):
        if not binary.exists():
            raise BenchError(f"{binary} was not built")
    return agent, collector


def start_collector(binary: Path, tmp: Path) -> tuple[Program, int, int]:
    """Starts the collector on ephemeral ports and reads them back from its startup line."""
    program = start("collector", [str(binary), "--http", "127.0.0.1:0", "--ws", "127.0.0.1:0",
                                  "--db", str(tmp / "hw.db"), "--no-self-monitor"], tmp)

    def ports():
        text = program.log.read_text(errors="replace")
        http = re.search(r"page and API on http://127\.0\.0\.1:(\d+)/", text)
        ws = re.search(r"WebSockets on ws://127\.0\.0\.1:(\d+)/", text)
        token = tmp / "hw.db.agent-token"
        return http and ws and token.exists() and (int(http[1]), int(ws[1]))

    http_port, ws_port = wait_for("the collector's listening line", ports, 30, [program])
    return program, http_port, ws_port


def start_agent(binary: Path, tmp: Path, ws_port: int) -> Program:
    return start("agent", [
        str(binary), "--collector", f"ws://127.0.0.1:{ws_port}/ingest",
        "--token-file", str(tmp / "hw.db.agent-token"), "--host-id", "bench",
        "--interval", "1s", "--spool-dir", str(tmp / "spool"), "--log-level", "warn",
    ], tmp)


def start_node_exporter(tmp: Path) -> tuple[Program, int]:
    port = free_port()
    program = start("node_exporter", [str(NODE_EXPORTER),
                                      f"--web.listen-address=127.0.0.1:{port}"], tmp)
    return program, port


def collectd_config(tmp: Path, plugins: list[str], udp_port: int) -> Path:
    lines = [
        'Hostname "bench"', "FQDNLookup false", f'BaseDir "{tmp}/collectd"',
        f'PIDFile "{tmp}/collectd.pid"', f'PluginDir "{COLLECTD_PLUGIN_DIR}"',
        f'TypesDB "{COLLECTD_TYPES_DB}"', "Interval 1",
    ]  # No log plugin: collectd then logs to stderr, which goes to its log file.
    lines += [f"LoadPlugin {name}" for name in plugins]
    lines += ["LoadPlugin network",
              f'<Plugin network>\n  Server "127.0.0.1" "{udp_port}"\n</Plugin>']
    conf = tmp / "collectd.conf"
    conf.write_text("\n".join(lines) + "\n")
    (tmp / "collectd").mkdir(exist_ok=True)
    return conf


def loadable_collectd_plugins(tmp: Path) -> list[str]:
    """The wanted plugins that exist and pass `collectd -t` (which loads them) on this host."""
    present = [p for p in COLLECTD_PLUGINS if (COLLECTD_PLUGIN_DIR / f"{p}.so").exists()]
    usable = []
    for plugin in present:
        conf = collectd_config(tmp, [plugin], 9)  # the port does not matter to -t
        if subprocess.run([str(COLLECTD), "-t", "-C", str(conf)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            usable.append(plugin)
    return usable


# ---------------------------------------------------------------------------------------------
# Wire observers


class Timeline:
    """Thread-safe (time, bytes) events recorded by a background thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, int]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def add(self, nbytes: int) -> None:
        with self.lock:
            self.events.append((time.monotonic(), nbytes))

    def within(self, t0: float, t1: float) -> list[int]:
        with self.lock:
            return [n for t, n in self.events if t0 <= t < t1]


def udp_sink(sock: socket.socket, timeline: Timeline) -> None:
    """Counts the UDP payload bytes collectd's network plugin sends us."""
    sock.settimeout(0.2)
    while not timeline.stop.is_set():
        try:
            data = sock.recv(65535)
        except socket.timeout:
            continue
        timeline.add(len(data))


def http_get_raw(port: int, path: str, gzip_ok: bool) -> bytes:
    """One HTTP/1.1 GET over a fresh connection; returns the whole response, headers included,
    exactly as it came over the socket."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: hostwatch-bench\r\n"
               + ("Accept-Encoding: gzip\r\n" if gzip_ok else "")
               + "Connection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def scraper(port: int, timeline: Timeline) -> None:
    """Scrapes node_exporter once per second on a fixed schedule, asking for gzip as the
    Prometheus server does, and records each response's size."""
    next_at = time.monotonic()
    while not timeline.stop.is_set():
        try:
            response = http_get_raw(port, "/metrics", gzip_ok=True)
            if not response.startswith(b"HTTP/1.1 200"):
                raise BenchError(f"node_exporter answered {response[:40]!r}")
            timeline.add(len(response))
        except (OSError, BenchError) as err:
            timeline.errors.append(str(err))
        next_at += 1.0
        timeline.stop.wait(max(0.0, next_at - time.monotonic()))


def metrics_body_plain(port: int) -> tuple[int, int]:
    """(response bytes, number of samples) of one uncompressed scrape, for reference."""
    response = http_get_raw(port, "/metrics", gzip_ok=False)
    _, _, body = response.partition(b"\r\n\r\n")
    if b"Transfer-Encoding: chunked" in response[:len(response) - len(body)]:
        body = dechunk(body)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return len(response), samples


def dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


def agent_socket_bytes(agent_pid: int, ws_port: int) -> tuple[str, int]:
    """(local address, TCP payload bytes sent) of the agent's connection to the collector,
    from the kernel's tcp_info as `ss -tinp` shows it."""
    try:
        out = subprocess.run(
            ["ss", "-tinpH", "state", "established", f"( dport = :{ws_port} )"],
            capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise BenchError(f"cannot run ss (iproute2): {err}") from err
    # Each socket is one line followed by an indented line of tcp_info.
    entries = re.split(r"\n(?=\S)", out.strip())
    for entry in entries:
        if f"pid={agent_pid}," not in entry:
            continue
        local = entry.split()[2]
        sent = re.search(r"\bbytes_sent:(\d+)", entry) or re.search(r"\bbytes_acked:(\d+)", entry)
        if not sent:
            raise BenchError(f"ss shows no bytes_sent/bytes_acked for the agent: {entry!r}")
        return local, int(sent[1])
    raise BenchError(f"the agent (pid {agent_pid}) has no connection to 127.0.0.1:{ws_port}; "
                     f"ss printed:\n{out or '(nothing)'}")


def samples_total(http_port: int) -> int:
    url = f"http://127.0.0.1:{http_port}/api/stats"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(json.load(response)["samples_total"])
    except (OSError, ValueError, KeyError) as err:
        raise BenchError(f"cannot read samples_total from {url}: {err!r}") from err


# ---------------------------------------------------------------------------------------------
# Measurement


@dataclass
class Results:
    window_s: float
    programs: dict[str, Program]
    agent_samples: int
    agent_bytes: int
    scrapes: list[int]
    udp: list[int]
    plain_scrape: tuple[int, int]
    sizes: dict[str, int]
    size_notes: dict[str, str]


def run_window(programs: dict[str, Program], seconds: float, http_port: int,
               ws_port: int) -> tuple[float, float, int, int]:
    """Measures the window; returns (t0, t1, samples sent, agent bytes sent)."""
    agent = programs["agent"]
    everyone = list(programs.values())
    for program in everyone:
        program.check_alive()
    # Window start: one snapshot of every counter, as close together as possible.
    t0 = time.monotonic()
    for program in everyone:
        program.ticks_start = cpu_ticks(program.pid)
        program.threads_start = thread_ticks(program.pid)
    local0, bytes0 = agent_socket_bytes(agent.pid, ws_port)
    samples0 = samples_total(http_port)

    next_at = t0
    while True:
        for program in everyone:
            program.check_alive()
            program.rss_kib.append(kib(proc_status(program.pid), "VmRSS"))
        next_at += 1.0
        if next_at > t0 + seconds:
            break
        time.sleep(max(0.0, next_at - time.monotonic()))
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))

    t1 = time.monotonic()
    for program in everyone:
        program.ticks_end = cpu_ticks(program.pid)
        program.threads_end = thread_ticks(program.pid)
        program.status_end = proc_status(program.pid)
        program.rss_kib.append(kib(program.status_end, "VmRSS"))
    local1, bytes1 = agent_socket_bytes(agent.pid, ws_port)
    samples1 = samples_total(http_port)
    if local0 != local1:
        raise BenchError(f"the agent reconnected during the window ({local0} then {local1}); "
                         "its byte counter restarted, so bytes per sample cannot be measured")
    return t0, t1, samples1 - samples0, bytes1 - bytes0


def binary_sizes(agent_bin: Path, collectd: Program) -> tuple[dict[str, int], dict[str, str]]:
    plugins = sorted(mapped_files(collectd.pid, COLLECTD_PLUGIN_DIR))
    sizes = {
        "agent": agent_bin.stat().st_size,
        "node_exporter": NODE_EXPORTER.stat().st_size,
        "collectd": COLLECTD.stat().st_size + sum(p.stat().st_size for p in plugins),
    }
    notes = {
        "agent": "stripped" if not elf_has_symtab(agent_bin) else "NOT stripped",
        "collectd": f"{COLLECTD} + {len(plugins)} plugins it mapped: "
                    + " ".join(p.stem for p in plugins),
    }
    return sizes, notes


# ---------------------------------------------------------------------------------------------
# Report


NAMES = ["agent", "node_exporter", "collectd"]


def fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def report(res: Results, command: str, plugins: list[str]) -> None:
    p = res.programs
    cpu_s = {n: (p[n].ticks_end - p[n].ticks_start) / CLK_TCK for n in NAMES}
    cpu_per_h = {n: cpu_s[n] / res.window_s * 3600 for n in NAMES}
    rows = [
        # (label, digits, values by program, agent target, agent meets target?)
        ("resident memory, max (MiB)", 2, {n: max(p[n].rss_kib) / 1024 for n in NAMES},
         f"<= {TARGET_RSS_MIB:g}", lambda v: v <= TARGET_RSS_MIB),
        ("resident memory, final (MiB)", 2, {n: p[n].rss_kib[-1] / 1024 for n in NAMES},
         f"<= {TARGET_RSS_MIB:g}", lambda v: v <= TARGET_RSS_MIB),
        ("CPU (CPU s per hour)", 2, cpu_per_h,
         f"<= {TARGET_CPU_S_PER_H:g}", lambda v: v <= TARGET_CPU_S_PER_H),
        ("CPU (% of one core)", 3, {n: cpu_per_h[n] / 36 for n in NAMES},
         f"<= {TARGET_CPU_S_PER_H / 36:g}", lambda v: v <= TARGET_CPU_S_PER_H / 36),
        ("bytes per sample on the wire", 0, {
            "agent": res.agent_bytes / res.agent_samples,
            "node_exporter": sum(res.scrapes) / len(res.scrapes),
            "collectd": sum(res.udp) / res.window_s,
        }, f"<= {TARGET_BYTES_PER_SAMPLE}", lambda v: v <= TARGET_BYTES_PER_SAMPLE),
        ("binary size on disk (MiB)", 2, {n: res.sizes[n] / MIB for n in NAMES},
         f"<= {TARGET_BINARY_MIB:g}", lambda v: v <= TARGET_BINARY_MIB),
    ]
    header = ["figure", "agent", "target", "met", "node_exporter", "collectd",
              "ne/agent", "cd/agent"]
    table = [header]
    for label, digits, values, target, ok in rows:
        agent = values["agent"]
        table.append([
            label, fmt(agent, digits), target, "yes" if ok(agent) else "NO",
            fmt(values["node_exporter"], digits), fmt(values["collectd"], digits),
            ratio(values["node_exporter"], agent), ratio(values["collectd"], agent),
        ])
    print()
    print(f"command:  {command}")
    print(f"date:     {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine:  {machine()}")
    print(f"source:   {source_version()}")
    tick_per_h = 3600 / CLK_TCK / res.window_s
    print(f"window:   {res.window_s:.1f} s measured after a {WARMUP_S:g} s warm-up; CPU is "
          f"counted in {1000 // CLK_TCK} ms ticks, so +/- {tick_per_h:.2f} CPU s/h")
    print()
    print_table(table)
    print()
    print("how each 'sample' was counted:")
    print(f"  agent:          {res.agent_bytes} TCP payload bytes sent / {res.agent_samples} "
          "samples stored by the collector in the window")
    print(f"  node_exporter:  {len(res.scrapes)} scrapes, mean response incl. headers, gzip "
          f"(as Prometheus asks); uncompressed it is {res.plain_scrape[0]:,} bytes "
          f"for {res.plain_scrape[1]:,} samples")
    print(f"  collectd:       {sum(res.udp):,} UDP payload bytes in {len(res.udp)} datagrams / "
          f"{res.window_s:.1f} s (Interval 1); plugins: {', '.join(plugins)}, network")
    print("binaries:")
    print(f"  agent:          {res.size_notes['agent']} release binary")
    print(f"  node_exporter:  {NODE_EXPORTER}")
    print(f"  collectd:       {res.size_notes['collectd']}")
    print()
    print("details at the end of the window (not targets):")
    detail = [["", *NAMES]]
    for key in ("Threads", "RssAnon", "RssFile", "VmHWM"):
        detail.append([key, *(p[n].status_end.get(key, "?") for n in NAMES)])
    detail.append(["busiest thread (CPU share)", *(busiest_thread(p[n]) for n in NAMES)])
    print_table(detail)


def ratio(peer: float, agent: float) -> str:
    return "n/a" if agent <= 0 else f"{peer / agent:.1f}x"


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def source_version() -> str:
    """The commit the agent was built from, marked -dirty if the work tree had changes."""
    result = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "(not a git checkout)"


def machine() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    try:
        debian = "Debian " + Path("/etc/debian_version").read_text().strip()
    except OSError:
        debian = platform.system()
    return f"{os.cpu_count()} cores ({model}), {debian}, kernel {platform.release()}"


# ---------------------------------------------------------------------------------------------


def measure(seconds: float, tmp: Path) -> tuple[Results, list[str]]:
    install_peers()
    agent_bin, collector_bin = build()
    plugins = loadable_collectd_plugins(tmp)
    if not plugins:
        raise BenchError("no collectd plugin of the agent's metric set loads on this host")

    collector, http_port, ws_port = start_collector(collector_bin, tmp)
    agent = start_agent(agent_bin, tmp, ws_port)
    node_exporter, ne_port = start_node_exporter(tmp)

    udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_sock.bind(("127.0.0.1", 0))
    conf = collectd_config(tmp, plugins, udp_sock.getsockname()[1])
    collectd = start("collectd", [str(COLLECTD), "-f", "-C", str(conf)], tmp)
    programs = {"agent": agent, "node_exporter": node_exporter, "collectd": collectd}

    scrapes, udp = Timeline(), Timeline()
    threads = [threading.Thread(target=udp_sink, args=(udp_sock, udp), daemon=True)]
    try:
        wait_for("node_exporter to listen",
                 lambda: _connects(ne_port), 30, [node_exporter])
        threads.append(threading.Thread(target=scraper, args=(ne_port, scrapes), daemon=True))
        for thread in threads:
            thread.start()
        wait_for("the agent's first sample at the collector",
                 lambda: samples_total(http_port) > 0, 30, [collector, agent])
        print(f"warming up {WARMUP_S:g} s, then measuring {seconds:g} s ...", flush=True)
        time.sleep(WARMUP_S)
        t0, t1, samples, agent_bytes = run_window(programs, seconds, http_port, ws_port)
        collector.check_alive()
        plain = metrics_body_plain(ne_port)
        sizes, notes = binary_sizes(agent_bin, collectd)
    finally:
        scrapes.stop.set()
        udp.stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=15)
        udp_sock.close()

    res = Results(t1 - t0, programs, samples, agent_bytes, scrapes.within(t0, t1),
                  udp.within(t0, t1), plain, sizes, notes)
    if res.agent_samples <= 0:
        raise BenchError("the collector stored no sample of the agent during the window")
    if not res.scrapes:
        raise BenchError("no node_exporter scrape succeeded during the window: "
                         + "; ".join(scrapes.errors[-3:]))
    if not res.udp:
        raise BenchError("collectd sent nothing to the network plugin's UDP socket during the "
                         "window; its log:\n" + tail(collectd.log))
    return res, plugins


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="length of the measured window in seconds (default 60, min 10)")
    args = parser.parse_args()
    if args.seconds < 10:
        parser.error("--seconds must be at least 10")
    command = "python3 " + " ".join(shlex.quote(a) for a in sys.argv)

    # SIGINT (even when inherited as ignored, as for a background job), SIGTERM and SIGHUP all
    # unwind as KeyboardInterrupt, so the finally below stops what was started.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)

    tmp = Path(tempfile.mkdtemp(prefix="hostwatch-bench-"))
    try:
        res, plugins = measure(args.seconds, tmp)
        report(res, command, plugins)
        return 0
    except BenchError as err:
        print(f"\nagent_footprint: cannot measure: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nagent_footprint: interrupted", file=sys.stderr)
        return 130
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
