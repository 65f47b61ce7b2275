"""The names of what a training workdir holds: one place for every module that writes or reads
a run (training, validate, average, sweeps, weight import)."""

CONFIG_FILE = "config.json"  # the config the run was trained with
SUMMARY_FILE = "summary.json"  # best/final metrics and the run's facts, written at the end
CLASSES_FILE = "class_names.json"  # image folders: the class names, in label order
METRICS_FILE = "metrics.jsonl"  # one JSON record per log point and per evaluation
CURVES_FILE = "curves.png"
CHECKPOINTS_DIR = "checkpoints"  # orbax: checkpoints/<step>/{state,data,metrics}
MEMORY_FIT_FILE = "memory_fit.json"  # device_memory_gb: the train step's peak per shape (a study shares one)
