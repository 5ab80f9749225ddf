#!/usr/bin/env python3
"""bench_table.py LOG — the markdown table of `rdma_vm.sh bench` (moerack vs perftest, by size).

Reads the client guest's log: `moerack bench transport` tables (rdma, rdma-busy-poll, tcp) and
perftest's ib_write_lat / ib_write_bw reports, repeated REPS times. Prints, per message size, the
median over repetitions with the spread (min-max) and the ratios against perftest:
  latency  moerack lat_p50_us vs ib_write_lat t_typical (both one-way: round trip / 2)
  bandwidth  moerack bw_MB/s vs ib_write_bw BW average, both in 10^6 B/s (perftest's MB/sec is
           checked against its MsgRate to find out whether it means 2^20).
"""
import re
import statistics
import sys
from collections import defaultdict


def parse(path):
    ours = defaultdict(lambda: defaultdict(list))  # mode -> size -> [(p50, p99, bw)]
    pt_lat = defaultdict(list)                      # size -> [t_typical]
    pt_bw = defaultdict(list)                       # size -> [MB/s, 10^6]
    wall = defaultdict(dict)     # (rep, size) -> iterations -> seconds
    wall_pt = defaultdict(dict)  # (rep, size) -> iterations -> perftest's own t_typical
    section, size = None, None
    for line in open(path, errors="replace"):
        m = re.match(r"== moerack (\S+) rep", line)
        if m:
            section = ("ours", m.group(1))
            continue
        m = re.match(r"== perftest wall-clock n=(\d+) rep (\d+)(?: size (\d+))?: (\S+) (\S+)", line)
        if m:
            it, rep, sz = int(m.group(1)), int(m.group(2)), int(m.group(3) or 64)
            wall[(rep, sz)][it] = float(m.group(5)) - float(m.group(4))
            section = ("wall", rep, sz, it)
            continue
        if section and section[0] == "wall":
            f = line.split()
            if f and f[0] == str(section[2]) and len(f) >= 5:
                # t_typical (the median) and t_avg, both on perftest's own clock
                wall_pt[(section[1], section[2])][section[3]] = (float(f[4]), float(f[5]))
            section = None
            continue
        m = re.match(r"== perftest (ib_write_lat|ib_write_bw)\S* rep \d+(?: size (\d+))?", line)
        if m:
            section = ("pt", m.group(1))
            continue
        if line.startswith("=="):  # a section this script does not know
            section = None
            continue
        f = line.split()
        if not f or not f[0].isdigit() or section is None:
            continue
        size = int(f[0])
        if section[0] == "ours" and len(f) >= 4:
            mean = float(f[6]) if len(f) >= 7 else float("nan")
            ours[section[1]][size].append((float(f[1]), float(f[2]), float(f[3]), mean))
        elif section == ("pt", "ib_write_lat") and len(f) >= 6:
            # #bytes #iterations t_min t_max t_typical t_avg t_stdev 99% 99.9%
            pt_lat[size].append(float(f[4]))
        elif section == ("pt", "ib_write_bw") and len(f) >= 5:
            # #bytes #iterations BW_peak BW_average MsgRate[Mpps]
            avg, mpps = float(f[3]), float(f[4])
            unit = 1e6
            if mpps > 0:  # which megabyte: the one that makes BW = MsgRate x size
                by_mib = abs(avg * 1048576 - mpps * 1e6 * size)
                by_mb = abs(avg * 1e6 - mpps * 1e6 * size)
                unit = 1048576 if by_mib < by_mb else 1e6
            pt_bw[size].append(avg * unit / 1e6)
    return ours, pt_lat, pt_bw, wall, wall_pt


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return f"{min(xs):.4g}–{max(xs):.4g}" if len(xs) > 1 else "-"


def human(n):
    for unit, s in ((1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit} {s}"
    return f"{n} B"


def main():
    ours, pt_lat, pt_bw, wall, wall_pt = parse(sys.argv[1])
    modes = [m for m in ("rdma", "rdma-busy-poll", "rdma-busy-cq", "tcp") if m in ours]
    reps = max((len(v) for m in modes for v in ours[m].values()), default=0)
    print(f"Repetitions: {reps}. Medians over repetitions; spread = min–max.\n")
    print("| size | perftest lat p50 µs (spread) | moerack rdma p50 µs (spread) | ratio "
          "| busy-poll p50 µs | ratio | tcp p50 µs "
          "| perftest bw MB/s (spread) | moerack rdma bw MB/s (spread) | ratio "
          "| busy-poll bw | ratio | tcp bw |")
    print("|" + "---|" * 13)
    for size in sorted(ours["rdma"]):
        r = ours["rdma"][size]
        b = ours.get("rdma-busy-poll", {}).get(size, [])
        t = ours.get("tcp", {}).get(size, [])
        pl, pb = pt_lat.get(size, []), pt_bw.get(size, [])
        lat, bw = [x[0] for x in r], [x[2] for x in r]
        blat, bbw = [x[0] for x in b], [x[2] for x in b]

        def ratio(a, p):
            return f"{med(a) / med(p):.2f}" if a and p else "-"

        print(f"| {human(size)} | {med(pl):.4g} ({spread(pl) if pl else 'n/a'}) "
              f"| {med(lat):.4g} ({spread(lat)}) | {ratio(lat, pl)} "
              f"| {med(blat):.4g} | {ratio(blat, pl)} | {med([x[0] for x in t]):.4g} "
              f"| {med(pb):.4g} ({spread(pb) if pb else 'n/a'}) "
              f"| {med(bw):.4g} ({spread(bw)}) | {ratio(bw, pb)} "
              f"| {med(bbw):.4g} | {ratio(bbw, pb)} | {med([x[2] for x in t]):.4g} |")
    calibration(wall, wall_pt, ours)
    per_rep(ours, pt_lat)
    busy_paths(ours, pt_lat)


def busy_paths(ours, pt_lat):
    """BUSY=2: busy polling with memory-polled messages (rdma-busy-poll) beside busy polling on the
    completion queue alone (rdma-busy-cq, the path before them), interleaved in the same run."""
    cq = ours.get("rdma-busy-cq", {})
    if not cq:
        return
    print("\nBusy polling, two receive paths interleaved: memory-polled messages (the default) and "
          "the completion queue alone (--busy-cq). p50 µs, median (spread) and every repetition.\n")
    print("| size | perftest | memory-polled | ratio | every rep | completion queue | ratio "
          "| every rep | memory / cq |")
    print("|---|---|---|---|---|---|---|---|---|")
    for sz in sorted(cq):
        pl = pt_lat.get(sz, [])
        mp = [x[0] for x in ours.get("rdma-busy-poll", {}).get(sz, [])]
        cp = [x[0] for x in cq[sz]]

        def cell(xs):
            return f"{med(xs):.4g} ({spread(xs)})" if xs else "-"

        def row(xs):
            return " ".join(f"{x:.0f}" for x in xs) if xs else "-"

        def ratio(a, b):
            return f"{med(a) / med(b):.2f}" if a and b else "-"

        print(f"| {human(sz)} | {cell(pl)} | {cell(mp)} | {ratio(mp, pl)} | {row(mp)} "
              f"| {cell(cp)} | {ratio(cp, pl)} | {row(cp)} | {ratio(mp, cp)} |")


def per_rep(ours, pt_lat):
    """Every repetition's p50 in run order, and the ratio of the fastest repetitions. On a shared
    host the busy pollers (ib_write_lat, and moerack with --busy-poll) are bimodal: a repetition that
    meets other load loses whole scheduler ticks (p50 of 2-4 ms instead of 0.2-0.4 ms), which moves
    a median of few repetitions; the fastest repetition is the one that ran undisturbed."""
    sizes = sorted(s for s in ours.get("rdma", {}) if s <= 4096)
    if not sizes:
        return
    print("\nEvery repetition's p50 µs in run order (perftest = ib_write_lat t_typical); fastest = "
          "the best repetition of each, ratio of the fastest.\n")
    print("| size | perftest | moerack event | moerack busy poll | fastest: perftest / event / busy "
          "| ratio event | ratio busy |")
    print("|---|---|---|---|---|---|---|")
    for sz in sizes:
        pl = pt_lat.get(sz, [])
        ev = [x[0] for x in ours["rdma"].get(sz, [])]
        bp = [x[0] for x in ours.get("rdma-busy-poll", {}).get(sz, [])]

        def row(xs):
            return " ".join(f"{x:.0f}" for x in xs) if xs else "-"

        def best(xs):
            return min(xs) if xs else float("nan")

        print(f"| {human(sz)} | {row(pl)} | {row(ev)} | {row(bp)} "
              f"| {best(pl):.0f} / {best(ev):.0f} / {best(bp):.0f} "
              f"| {best(ev) / best(pl):.2f} | {best(bp) / best(pl):.2f} |")


def calibration(wall, wall_pt, ours):
    """perftest's small-message latency put on the guest's wall clock: the mean one-way time by
    wall clock is (t(4000 iterations) - t(500)) / 7000 half round trips; perftest's own t_avg of
    the 4000-iteration run on its cycle counter gives the clock factor, which moves its median
    (t_typical) onto the wall clock. Beside moerack's p50 and mean (measured on the wall clock)."""
    sizes = sorted({sz for (_, sz) in wall})
    if not sizes:
        return
    print("\nSmall messages on one clock (medians over repetitions). perftest's cycle-counter clock "
          "is checked against the guest's wall clock: factor = wall-clock mean / perftest's own "
          "t_avg; perftest p50 on the wall clock = t_typical x factor.\n")
    print("| size | perftest t_typical µs (own clock) | clock factor (spread) "
          "| perftest p50 µs (wall clock) | moerack rdma p50 µs | ratio "
          "| busy-poll p50 µs | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for sz in sizes:
        typ, factor, typ_wall = [], [], []
        for (rep, s2), w in wall.items():
            pt = wall_pt[(rep, s2)].get(4000)
            if s2 == sz and 500 in w and 4000 in w and pt:
                true_mean = (w[4000] - w[500]) / (2 * 3500) * 1e6
                typ.append(pt[0])
                factor.append(true_mean / pt[1])
                typ_wall.append(pt[0] * true_mean / pt[1])
        r = ours.get("rdma", {}).get(sz, [])
        b = ours.get("rdma-busy-poll", {}).get(sz, [])
        p50, bp50 = med([x[0] for x in r]), med([x[0] for x in b])
        t = med(typ_wall)
        print(f"| {human(sz)} | {med(typ):.4g} | {med(factor):.2f} ({spread(factor)}) "
              f"| {t:.4g} | {p50:.4g} | {p50 / t:.2f} | {bp50:.4g} | {bp50 / t:.2f} |")


if __name__ == "__main__":
    main()
