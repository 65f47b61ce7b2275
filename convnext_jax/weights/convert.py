"""python -m convnext_jax.convert: PyTorch weight files <-> convnext_jax weights directories.

    python -m convnext_jax.convert SRC.pth|SRC.safetensors DST_DIR [--model NAME] [--num_classes N]
    python -m convnext_jax.convert SRC_DIR DST.safetensors|DST.pth        # export back to timm layout

The architecture is inferred from the checkpoint unless --model is given. SRC_DIR may also be a
training workdir (its latest checkpoint; --use_ema for the EMA weights). Official FCMAE
(pre-training) checkpoints convert to an FCMAE weights directory and back to the official layout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from convnext_jax.cli import ArgumentParser, reports_user_errors
from convnext_jax.weights.pytorch import (
    WeightsExistError,
    describe,
    export_pytorch_weights,
    flat_tensors,
    infer_config,
    infer_fcmae_config,
    load_pytorch_weights,
    read_state_dict,
    to_timm_layout,
    write_state_dict,
)


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m convnext_jax.convert",
        description=__doc__,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "src", help="PyTorch .pth/.pt/.bin/.safetensors file, a weights directory or a training workdir"
    )
    parser.add_argument(
        "dst", help="output: a directory (convnext_jax weights) or a .safetensors/.pth file (timm layout)"
    )
    parser.add_argument("--model", help="variant name (default: inferred from the checkpoint)")
    parser.add_argument("--num_classes", type=int, help="classifier size (default: from the checkpoint)")
    parser.add_argument("--reset_head", action="store_true", help="do not import the classifier (fine-tuning)")
    parser.add_argument("--use_ema", action="store_true", help="the EMA weights of a training checkpoint")
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    return parser


@reports_user_errors
def main(argv: Iterable[str] | None = None) -> int:
    """Convert between PyTorch files and convnext_jax weights directories."""
    from convnext_jax.models.naming import is_fcmae_checkpoint
    from convnext_jax.models.registry import build_any
    from convnext_jax.models.variants import model_config
    from convnext_jax.weights.directory import save_weights
    from convnext_jax.weights.load import load_pretrained, read_source, source_kind

    args = _parser().parse_args(None if argv is None else list(argv))
    if os.path.exists(args.dst) and not args.force:
        raise WeightsExistError(f"{args.dst} exists; pass --force to overwrite")
    if source_kind(args.src) != "pytorch":
        cfg, read = read_source(args.src, use_ema=args.use_ema)
        model = build_any(cfg)
        load_pretrained(model, args.src, use_ema=args.use_ema, read=read)  # the checkpoint is read once
        if args.dst.endswith((".safetensors", ".pth", ".pt", ".bin")):
            tensors = export_pytorch_weights(model)
            write_state_dict(tensors, args.dst)
            print(f"exported {len(tensors)} tensors of {describe(cfg)} to {args.dst}")
        else:
            save_weights(model, args.dst, overwrite=args.force)
            print(f"copied {describe(cfg)} from {args.src} to the weights directory {args.dst}")
        return 0
    state = read_state_dict(args.src)
    if is_fcmae_checkpoint(flat_tensors(state, use_ema=args.use_ema)):  # pre-training weights: the whole FCMAE
        cfg = infer_fcmae_config(flat_tensors(state, use_ema=args.use_ema))
        if args.model:
            cfg = cfg.replace(encoder=model_config(args.model, num_classes=0, grn_stats=cfg.encoder.grn_stats))
        model = build_any(cfg)
        load_pytorch_weights(model, state, use_ema=args.use_ema)
        save_weights(model, args.dst, overwrite=args.force)
        print(f"converted {args.src} -> {args.dst}: {describe(cfg)}")
        return 0
    tensors = to_timm_layout(state, use_ema=args.use_ema)
    cfg = model_config(args.model) if args.model else infer_config(tensors)
    if args.num_classes is not None:
        cfg = cfg.replace(num_classes=args.num_classes)
    elif args.model:
        cfg = cfg.replace(num_classes=int(tensors["head.fc.weight"].shape[0]) if "head.fc.weight" in tensors else 0)
    model = build_any(cfg)
    load_pytorch_weights(model, tensors, reset_head=args.reset_head)
    save_weights(model, args.dst, overwrite=args.force)
    print(f"converted {args.src} -> {args.dst}: {describe(cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
