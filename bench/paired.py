"""bench/paired.py RAW.TSV - the table of a paired benchmark run (bench/static.sh,
bench/h2tls.sh): per scenario the median req/s of nginx and sluice and the paired ratio,
the median of the per-round ratios sluice/nginx (rounds alternate, so each ratio compares
two systems measured seconds apart on the same noisy machine)."""
import collections
import statistics
import sys

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])][1:]
by = collections.defaultdict(dict)
for sc, rnd, system, rps in rows:
    by[sc].setdefault(rnd, {})[system] = float(rps)
print("%-18s %12s %12s %8s %s" % ("scenario", "nginx req/s", "sluice req/s", "ratio",
                                  "(per-round ratios)"))
for sc, rounds in by.items():
    ng = [r["nginx"] for r in rounds.values()]
    sl = [r["sluice"] for r in rounds.values()]
    ratios = sorted(r["sluice"] / r["nginx"] for r in rounds.values())
    print("%-18s %12.0f %12.0f %8.2f %s" % (sc, statistics.median(ng), statistics.median(sl),
                                           statistics.median(ratios),
                                           " ".join("%.2f" % x for x in ratios)))
