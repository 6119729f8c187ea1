"""One engine's matrix products on the shapes of SmolLM2-135M's forward at 4×128 tokens (see
backends/examples/gemm_shapes.rs for prunec's side): x[M,K] @ w[K,N], the best of a few
repetitions after one untimed run, in GFLOP/s, one JSON line per shape. scripts/bench-gemm runs
each engine in its own process, alternating.

  python3 scripts/bench_gemm.py ENGINE --threads T [--model-dir DIR] [M,K,N ...]

ENGINE: `ort` (onnxruntime's CPU provider: MLAS; a one-MatMul ONNX model per shape, built with
the `onnx` package, the weight an initializer), `numpy` (numpy's BLAS, OpenBLAS in the PyPI
wheels) or `torch` (torch.mm)."""
import argparse, json, os, time

SHAPES = [(512, 576, 576), (512, 576, 192), (512, 576, 1536), (512, 1536, 576), (512, 576, 49152)]


def best_rate(run, flops):
    run()
    reps = max(3, int(2e10 / flops))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=["ort", "numpy", "torch"])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--model-dir", default=".")
    ap.add_argument("shapes", nargs="*")
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes] or SHAPES
    import numpy as np
    for m, k, n in shapes:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((k, n), dtype=np.float32)
        want = x[:4].astype(np.float64) @ w.astype(np.float64)
        if args.engine == "ort":
            import onnx
            import onnxruntime as ort
            from onnx import TensorProto, helper, numpy_helper
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                [numpy_helper.from_array(w, "w")])
            path = os.path.join(args.model_dir, f"matmul-{m}x{k}x{n}.onnx")
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            run = lambda: sess.run(None, {"x": x})[0]
            version = ort.__version__
        elif args.engine == "numpy":
            run = lambda: x @ w
            version = np.__version__
        else:
            import torch
            torch.set_num_threads(args.threads)
            tx, tw = torch.from_numpy(x), torch.from_numpy(w)
            run = lambda: torch.mm(tx, tw).numpy()
            version = torch.__version__
        got = run()[:4]
        err = float(np.abs(got - want).max() / np.abs(want).max())
        if err > 1e-4:
            raise SystemExit(f"{args.engine} {m}x{k}x{n}: relative error {err:.2e}")
        rate = best_rate(run, 2.0 * m * k * n)
        print(json.dumps({"engine": args.engine, "version": version, "m": m, "k": k, "n": n, "gflops": round(rate, 1)}), flush=True)


if __name__ == "__main__":
    main()
