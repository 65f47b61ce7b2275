"""Fine-tune from pretrained weights (timm/official .pth/.safetensors, a convnext_jax weights
directory or a training workdir) with a fresh classifier for the new class count. The
architecture is the checkpoint's unless model= names one. FCMAE (pre-training) weights — an
official `*_fcmae.pt`, or a workdir of `configs/fcmae_pretrain.py` — get the official ConvNeXt-V2
fine-tuning defaults (see `common.fcmae_finetune`) and the encoder only.

    --config configs/finetune.py:/weights/convnext_tiny.pth --config.data.source=folder:/data/mine
    --config configs/finetune.py:weights=/weights/atto.pth,model=convnext_atto
    --config configs/finetune.py:runs/fcmae_tiny,tiny  # the CPU demo after fcmae_pretrain.py:tiny

Arguments: weights=PATH (the default argument), model=NAME ('' = the checkpoint's), tiny (the
demo's fine-tuning on the embedded digits at 64 px: see `common.finetune_tiny`).
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, weights="", model="", tiny=False)
    config = common.base_config()
    config.model.name = args.model
    config.model.init_from = args.weights
    config.model.reset_head = True
    config.model.drop_path_rate = 0.1
    config.num_epochs = 30
    config.batch_size = 64
    config.optim.lr = 5e-5
    config.optim.weight_decay = 0.05
    config.optim.warmup_epochs = 0
    config.optim.min_lr = 1e-6
    config.optim.layer_decay = 0.8  # the ConvNeXt V2 fine-tuning recipe's value for tiny/base sizes
    config.data.augment.auto_augment = "rand-m9-mstd0.5-inc1"
    config.data.augment.re_prob = 0.25
    if common.is_fcmae_weights(args.weights):
        config = common.fcmae_finetune(config)
    if args.tiny:
        config = common.finetune_tiny(config)
    config.lock()
    return config
