#!/usr/bin/python3
"""The faiss peer of `visage bench index --faiss`.

Reads the vectors, queries and exact answers that the Go command wrote into
--dir (base.f32 and queries.f32: little-endian float32 rows of 128;
truth.u64: the exact top-k row numbers of each query), builds
faiss.IndexHNSWFlat with the same M and efConstruction on every core, then
searches with one thread for each efSearch and prints key=value lines in the
Go command's format.

Needs Debian's python3-faiss and python3-numpy (scripts/bench.sh installs
them: apt-get install python3-faiss python3-numpy); run it with Debian's
/usr/bin/python3, which is the interpreter those packages serve.
"""

import argparse
import os
import sys
import time

import numpy as np

try:
    import faiss
except ImportError:
    sys.exit("bench_faiss: faiss not found: apt-get install python3-faiss python3-numpy, and use /usr/bin/python3")

DIM = 128


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--m", type=int, required=True)
    ap.add_argument("--ef-construction", type=int, required=True)
    ap.add_argument("--ef", required=True, help="comma-separated efSearch values")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--reuse", action="store_true", help="read the graph an earlier run left in --dir instead of building it")
    args = ap.parse_args()

    base = np.fromfile(os.path.join(args.dir, "base.f32"), dtype="<f4").reshape(-1, DIM)
    queries = np.fromfile(os.path.join(args.dir, "queries.f32"), dtype="<f4").reshape(-1, DIM)
    truth = np.fromfile(os.path.join(args.dir, "truth.u64"), dtype="<u8").reshape(len(queries), -1)[:, : args.k].astype(np.int64)

    path = os.path.join(args.dir, "faiss.index")
    if args.reuse and os.path.exists(path):
        index = faiss.read_index(path)
        print(f"build impl=faiss-hnsw reused={path}", flush=True)
    else:
        index = faiss.IndexHNSWFlat(DIM, args.m)
        index.hnsw.efConstruction = args.ef_construction
        threads = faiss.omp_get_max_threads()
        start = time.perf_counter()
        index.add(base)
        build = time.perf_counter() - start
        print(f"build impl=faiss-hnsw threads={threads} s={build:.1f} per_s={len(base) / build:.0f} rss_mb={rss_mb():.0f}", flush=True)

    # One core, as for Visage: per-query calls give the latencies, one
    # batched call the throughput without Python's per-call overhead.
    faiss.omp_set_num_threads(1)
    for ef in [int(v) for v in args.ef.split(",")]:
        index.hnsw.efSearch = ef
        lat = np.empty(len(queries))
        for i in range(len(queries)):
            t = time.perf_counter()
            index.search(queries[i : i + 1], args.k)
            lat[i] = time.perf_counter() - t
        t = time.perf_counter()
        _, found = index.search(queries, args.k)
        batch = time.perf_counter() - t
        hits = sum(len(np.intersect1d(found[i], truth[i])) for i in range(len(queries)))
        recall = hits / (args.k * len(queries))
        print(
            f"search impl=faiss-hnsw ef={ef} recall{args.k}={recall:.4f} p50_ms={np.percentile(lat, 50) * 1e3:.3f} "
            f"p99_ms={np.percentile(lat, 99) * 1e3:.3f} qps_1core={len(queries) / batch:.1f}",
            flush=True,
        )

    # Kept in --dir for --reuse (a temporary --dir is removed by the Go command).
    start = time.perf_counter()
    faiss.write_index(index, path)
    save = time.perf_counter() - start
    size = os.path.getsize(path)
    del index
    start = time.perf_counter()
    faiss.read_index(path)
    load = time.perf_counter() - start
    print(f"snapshot impl=faiss-hnsw save_s={save:.2f} load_s={load:.2f} file_mb={size / 2**20:.0f}", flush=True)


if __name__ == "__main__":
    main()
