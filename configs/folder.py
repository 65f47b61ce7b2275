"""Train on your own images: a folder with train/ and val/ splits, one subfolder per class
(torchvision's ImageFolder layout; any PIL-readable image).

    /data/mine/train/cat/001.jpg ...   /data/mine/val/cat/101.jpg ...

    python -m convnext_jax.main --config configs/folder.py:/data/mine --workdir runs/mine
    python -m convnext_jax.main --config configs/folder.py:path=/data/mine,size=128,model=convnext_tiny \\
        --workdir runs/mine_tiny --config.num_epochs=50
    # fine-tune instead of training from scratch (timm/official .pth or .safetensors, architecture inferred):
    python -m convnext_jax.main --config configs/folder.py:path=/data/mine,weights=/w/convnext_atto.pth \\
        --workdir runs/mine_ft

Arguments: path=DIR (the default argument), model=NAME (default convnextv2_atto, or with weights=
the checkpoint's architecture), size=PX (224), weights=PATH (pretrained weights, fresh classifier).
A general recipe: ImageNet normalisation, RandomResizedCrop + flip, label smoothing 0.1, AdamW
with cosine decay and warmup; with weights, timm-style fine-tuning (lower LR, layer decay).
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, path="", model="", size=224, weights="")
    if not args.path:
        raise common.ConfigError(
            "configs/folder.py needs the dataset folder: --config configs/folder.py:/data/mine "
            "(with /data/mine/train/<class>/ and /data/mine/val/<class>/)"
        )
    config = common.base_config()
    config.data.source = f"folder:{args.path}"
    config.data.image_size = args.size
    config.data.crop_pct = 0.875
    config.data.workers = 2
    config.model.name = args.model or ("" if args.weights else "convnextv2_atto")
    config.model.drop_path_rate = 0.1
    config.num_epochs = 30
    config.batch_size = 64
    config.label_smoothing = 0.1
    config.optim.lr = 1e-3
    config.optim.weight_decay = 0.05
    config.optim.warmup_epochs = 3
    config.checkpoint.keep_best = 3  # the 3 best epochs are kept for `python -m convnext_jax.average --top_k 3`
    if args.weights:
        config.model.init_from = args.weights
        config.model.reset_head = True
        config.optim.lr = 1e-4
        config.optim.warmup_epochs = 1
        config.optim.layer_decay = 0.8
    config.lock()
    return config
