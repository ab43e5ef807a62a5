from .config import TrainConfig
from .run import train
from .trainer import PretrainTask, Trainer

__all__ = ["PretrainTask", "TrainConfig", "Trainer", "train"]
