"""test_dist_netns.py: two ranks on two "hosts" (docs/SCALING.md, "Two hosts").

The test makes two network namespaces, joins them with a veth pair
(10.77.0.1/24 and 10.77.0.2/24, lo and the veth up in each), and runs
`mpirun -np 2 moe train --expert-parallel 2` with one rank in each: mpirun
and rank 0 in the first namespace, rank 1 started in the second by Open
MPI's rsh launcher, whose agent (--mca plm_rsh_agent) is a script this test
writes that runs the daemon's command under `ip netns exec` instead of ssh.
The hostfile names the two veth addresses; --mca btl self,tcp and the
btl/oob interface lists keep every byte on the veth subnet.
  dist-netns/losses   the 20-step losses (dropless top-2, EP 2) equal the
                      loopback mpirun run's within 1e-5 relative per step
                      (the bound of test_dist.py)
  dist-netns/veth     the veth's receive and send counters (sysfs, read in
                      the first namespace) each grew by at least the bytes
                      rank 0 says it received by collectives: the exchange
                      crossed the veth, not loopback or shared memory
  dist-netns/link-down  a run with --dist-timeout 5 and a checkpoint at
                      step 2; once it is saved, `ip link set VETH down` in
                      the second namespace: mpirun and both ranks are gone
                      within 30 s, mpirun exits non-zero, stderr has the
                      watchdog's "no progress" line naming a rank, the step
                      and the collective, and model.gguf / state.gguf are
                      byte-identical to the step-2 checkpoint
  dist-netns/cleanup  the namespaces are gone afterwards
The namespaces (moe-nt<pid>a/b) are removed in a finally; ones left by a
test process that no longer runs are removed at the start.
SKIPPED when mpirun, an MPI build or `ip netns add` (root, CAP_NET_ADMIN)
is missing; under CI (the environment variable CI set) that is a FAIL.
"""
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dist_util  # noqa: E402
from dist_util import env, report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = os.environ.get("MOE_BIN") or os.path.join(ROOT, "build", "moe")
LIB = os.environ.get("MOE_LIB") or os.path.join(ROOT, "build", "libmoe.so")
NAME = "dist-netns"
BOUND = 1e-5
PID = os.getpid()
NS = ["moe-nt%da" % PID, "moe-nt%db" % PID]
DEV = ["mnt%da" % PID, "mnt%db" % PID]  # veth ends (15 characters at most)
ADDR = ["10.77.0.1", "10.77.0.2"]
SUBNET = "10.77.0.0/24"
ARGS = ["--steps", "20", "--batch", "4", "--ctx", "32", "--d", "32", "--layers", "2", "--heads", "2",
        "--kv-heads", "1", "--experts", "4", "--k", "2", "--expert-dff", "32", "--vocab", "300",
        "--corpus-bytes", "60000", "--eval-every", "0", "--seed", "3", "--lr", "3e-3", "--warmup", "3"]


def skip_or_fail(why):
    dist_util.skip_or_fail(NAME, why)


def sh(cmd, timeout=60):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=env())
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def ns_list():
    rc, out, _ = sh(["ip", "netns", "list"])
    return [l.split()[0] for l in out.splitlines() if l.strip()] if rc == 0 else []


def remove_stale():
    """Namespaces of this test whose process is gone."""
    for n in ns_list():
        m = re.match(r"moe-nt(\d+)[ab]$", n)
        if m and (int(m.group(1)) == PID or not os.path.exists("/proc/%s" % m.group(1))):
            sh(["ip", "netns", "del", n])


def setup():
    """The two namespaces and the veth between them; None or what failed."""
    steps = [["ip", "netns", "add", NS[0]], ["ip", "netns", "add", NS[1]],
             ["ip", "link", "add", DEV[0], "netns", NS[0], "type", "veth", "peer", "name", DEV[1], "netns", NS[1]]]
    for i in (0, 1):
        steps += [["ip", "-n", NS[i], "addr", "add", ADDR[i] + "/24", "dev", DEV[i]],
                  ["ip", "-n", NS[i], "link", "set", "lo", "up"],
                  ["ip", "-n", NS[i], "link", "set", DEV[i], "up"]]
    for s in steps:
        rc, _, err = sh(s)
        if rc:
            return "%s: %s" % (" ".join(s), err.strip())
    return None


def counters():
    """(rx, tx) bytes of the first namespace's veth end."""
    out = []
    for k in ("rx_bytes", "tx_bytes"):
        rc, v, err = sh(["ip", "netns", "exec", NS[0], "cat", "/sys/class/net/%s/statistics/%s" % (DEV[0], k)])
        out.append(int(v) if rc == 0 else -1)
    return out


def losses(d):
    out = []
    with open(os.path.join(d, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "loss" in j:
                out.append((j["step"], j["loss"]))
    return out


def main():
    if not shutil.which("mpirun"):
        skip_or_fail("mpirun not found (scripts/deps.sh installs openmpi-bin)")
    try:
        if not ctypes.CDLL(LIB).moe_dist_available():
            skip_or_fail("%s was built without MPI (mpicc missing; make MPI=1)" % LIB)
    except OSError as e:
        skip_or_fail("cannot load %s: %s" % (LIB, e))
    if not shutil.which("ip"):
        skip_or_fail("the ip command (iproute2) is missing")
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="moe-netns-")
    remove_stale()
    try:
        why = setup()
        if why:
            skip_or_fail("cannot make network namespaces here (root with CAP_NET_ADMIN is needed): " + why)
        two_hosts(tmp)
        link_down(tmp)
    finally:
        for n in NS:
            if n in ns_list():
                sh(["ip", "netns", "del", n])
        shutil.rmtree(tmp, ignore_errors=True)
    left = [n for n in NS if n in ns_list()]
    report(NAME + "/cleanup", not left, "namespaces left: %s" % left)
    print("%s: %.1f s" % (NAME, time.time() - t0))


BASE = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "2", "-x", "OMP_NUM_THREADS",
        "-x", "ASAN_OPTIONS"]


def two_ns_mpirun(tmp, extra=()):
    """mpirun in the first namespace, one rank per namespace (two_hosts writes the agent and hostfile)."""
    return (["ip", "netns", "exec", NS[0]] + BASE + list(extra) +
            ["--hostfile", os.path.join(tmp, "hosts"), "--mca", "plm_rsh_agent", os.path.join(tmp, "agent.sh"),
             "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", SUBNET,
             "--mca", "oob_tcp_if_include", SUBNET])


def procs_of(mark):
    """pids of the processes whose command line holds mark (this test's run folder)."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == PID:
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                if mark.encode() in f.read():
                    out.append(int(p))
        except OSError:
            pass
    return out


def link_down(tmp):
    """A link that goes down silently mid-run: the watchdog ends the job."""
    name = NAME + "/link-down"
    d = os.path.join(tmp, "linkdown")
    args = [a if a != "20" else "100000" for a in ARGS]  # still running when the link goes
    # mpirun and the daemon of the cut-off "host" learn that their control
    # connection is gone by TCP keepalive (Open MPI's default: after 300 s
    # idle, then 9 probes 20 s apart); shortened here as a job would on a
    # network where hosts can vanish (docs/SCALING.md, "Faults")
    ka = ["--mca", "oob_tcp_keepalive_time", "5", "--mca", "oob_tcp_keepalive_intvl", "2",
          "--mca", "oob_tcp_keepalive_probes", "3"]
    # and a message to a host that is gone (mpirun's order to end the job)
    # is given up after a few retransmissions (Linux's default, 15, takes
    # about 15 minutes); per namespace, so only these two "hosts"
    for n in NS:
        sh(["ip", "netns", "exec", n, "sysctl", "-q", "-w", "net.ipv4.tcp_retries2=4"])
    cmd = two_ns_mpirun(tmp, ka) + [MOE, "--threads", "1", "train"] + args + \
        ["--expert-parallel", "2", "--dist-timeout", "5", "--save-every", "20", "--quiet", "--out", d]
    errf = open(os.path.join(tmp, "linkdown.err"), "w+")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, env=env())
    files = [os.path.join(d, f) for f in ("model.gguf", "state.gguf")]
    saved, t_end = None, time.time() + 60
    try:
        while time.time() < t_end and p.poll() is None:  # the step-2 checkpoint, then its bytes
            if all(os.path.exists(f) for f in files):
                time.sleep(0.2)  # the next checkpoint (step 40) is over a second later
                saved = [open(f, "rb").read() for f in files]
                break
            time.sleep(0.1)
        if saved is None:
            errf.seek(0)
            report(name, False, "no checkpoint within 60 s (mpirun %s): %s" % (p.poll(), errf.read()[-400:]))
            return
        # cut the link: drop the second namespace's veth end (no reset reaches either side)
        rc, _, e = sh(["ip", "-n", NS[1], "link", "set", DEV[1], "down"])
        if rc:
            report(name, False, "ip link set down: %s" % e.strip())
            return
        t0 = time.time()
        while time.time() < t0 + 30 and (p.poll() is None or procs_of(tmp)):
            time.sleep(0.2)
        gone = time.time() - t0
        left = procs_of(tmp)  # the ranks, mpirun and Open MPI's daemons (their command lines name tmp)
        running = p.poll() is None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for q in procs_of(tmp):
            try:
                os.kill(q, 9)
            except OSError:
                pass
    errf.seek(0)
    err = errf.read()
    errf.close()
    m = re.search(r"moe: rank (\d): no progress for \d+ s in ([\w() -]+) \(([a-z ]*step) (\d+)\)", err)
    same = [open(f, "rb").read() for f in files] == saved
    why = []
    if running or left:
        why.append("still running 30 s after the link went down: mpirun %s, processes %s" %
                   ("running" if running else "gone", left))
    if not running and p.returncode == 0:
        why.append("mpirun exited 0")
    if not m:
        why.append("no 'no progress' line naming rank, step and collective")
    if not same:
        why.append("the checkpoint files changed")
    report(name, not why, "; ".join(why) + ": " + err[-600:],
           "gone %.1f s after the link went down, mpirun exit %s; %s" %
           (gone, p.returncode, m.group(0) if m else ""))


def two_hosts(tmp):
    """The loopback run, then the same run over the veth."""
    # the rsh agent: "AGENT HOST COMMAND..." runs COMMAND in HOST's namespace
    agent = os.path.join(tmp, "agent.sh")
    with open(agent, "w") as f:
        f.write("#!/bin/sh\nhost=$1; shift\ncase \"$host\" in\n")
        for a, n in zip(ADDR, NS):
            f.write("%s) ns=%s ;;\n" % (a, n))
        f.write("*) echo \"agent: no namespace for host $host\" >&2; exit 1 ;;\nesac\n"
                "exec ip netns exec \"$ns\" sh -c \"$*\"\n")
    os.chmod(agent, 0o755)
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:
        f.write("".join("%s slots=1\n" % a for a in ADDR))
    base = BASE
    train = [MOE, "--threads", "1", "train"] + ARGS + ["--expert-parallel", "2"]

    ref = os.path.join(tmp, "loopback")
    rc, _, err = sh(base + train + ["--quiet", "--out", ref], timeout=300)
    if rc:
        report(NAME + "/losses", False, "the loopback run exited %d: %s" % (rc, err[-400:]))
        return
    got = os.path.join(tmp, "netns")
    c0 = counters()
    cmd = two_ns_mpirun(tmp) + train + ["--out", got]
    try:
        rc, out, err = sh(cmd, timeout=300)
    except subprocess.TimeoutExpired:
        rc, out, err = -1, "", "timed out after 300 s"
    c1 = counters()
    if rc:
        report(NAME + "/losses", False, "the two-namespace run exited %d: %s" % (rc, (out + err)[-600:]))
        return
    a, b = losses(ref), losses(got)
    worst, at = 0.0, 0
    for (s, x), (_, y) in zip(a, b):
        r = abs(x - y) / max(abs(x), 1e-30)
        if r > worst:
            worst, at = r, s
    same_steps = [s for s, _ in a] == [s for s, _ in b] and len(a) == 20
    report(NAME + "/losses", same_steps and worst <= BOUND,
           "steps %d vs %d; step %d: relative loss difference %.3g (bound %g)" % (len(a), len(b), at, worst, BOUND),
           "%d steps, max rel %.2g against the loopback run" % (len(a), worst))
    # rank 0 (in the first namespace) receives through the veth's rx,
    # rank 1 through its tx
    moved = [-1, -1]
    for r, n in re.findall(r"communication: rank (\d) received (\d+) bytes", out):
        moved[int(r)] = int(n)
    rx, tx = c1[0] - c0[0], c1[1] - c0[1]
    report(NAME + "/veth", min(moved) > 0 and rx >= moved[0] and tx >= moved[1],
           "ranks 0, 1 received %s bytes by collectives (-1: no line); veth %s rx +%d, tx +%d bytes" %
           (moved, DEV[0], rx, tx),
           "ranks 0, 1 received %.2f, %.2f MB by collectives; the veth carried rx +%.2f, tx +%.2f MB" %
           (moved[0] / 1e6, moved[1] / 1e6, rx / 1e6, tx / 1e6))


if __name__ == "__main__":
    try:
        main()
    finally:
        sys.stdout.flush()
    sys.exit(1 if dist_util.failed() else 0)
