"""The training loop: AR and masked diffusion share it; only the objective differs.

AdamW, linear warm-up then cosine decay, gradient clipping and accumulation, bf16 autocast on
CUDA, periodic held-out evaluation, metrics.csv + loss.png, a rich progress bar, atomic
checkpoints and exact resume. Under ``torchrun`` it runs DDP (gloo on CPU, NCCL on CUDA): every
rank takes its slice of the same global batch, so the result matches one process.

    from dlm.train import TrainConfig, Trainer
    result = Trainer(TrainConfig(preset="tiny", max_steps=200)).run()
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .. import kinds
from ..data.corpora import load_corpus
from ..data.loader import EpochLoader, pack_documents, token_stream
from ..data.tokenizer import Tokenizer, build_tokenizer
from ..devices import autocast, resolve_device
from ..diffusion.likelihood import EvalResult, eval_chunks
from ..errors import DLMError
from ..models.formats import CONFIG_FILE, TOKENIZER_FILE, load_weights_into, save_model_dir
from ..models.presets import preset_config
from ..models.transformer import Transformer
from ..version import __version__
from . import checkpoint as ckpt
from .config import RESUME_OVERRIDABLE, TrainConfig
from .metrics import append_csv, plot_losses, read_csv, write_csv

CALIBRATION_STEPS = (10, 60)  # time steps 10..60 to size a --max-minutes schedule
WARMUP_DEFAULT = TrainConfig.__dataclass_fields__["warmup_steps"].default


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistInfo:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def sized_by_time(cfg: TrainConfig) -> bool:
    """Whether the run's length is learned from its measured speed (after the calibration
    steps), not known from the config (--max-steps, --epochs)."""
    return cfg.max_steps is None and cfg.epochs is None


def warmup_steps(cfg: TrainConfig, total: int | None) -> int:
    """The warm-up the schedule uses: ``--warmup-steps``, but at most a fifth of the run (at
    least 1 step) whenever its length is known from the config (--max-steps, --epochs), in
    pre-training and SFT alike: a 20-step fine-tune warms up over 4 steps, not 100, so it
    reaches its peak rate. (A fifth: runs long enough for the default warm-up keep it, and
    short ones still spend most of their steps at and after the peak.) Kept as configured:
    a time-sized plan's (its length is learned only after the calibration steps, run under
    that warm-up, and the rate must not jump then) and wsd's (every prefix of a wsd run is
    shared by longer ones, which annealed branches rely on). Depends only on the config and
    the planned total, so a resumed run follows the same schedule."""
    if total is None or sized_by_time(cfg) or cfg.lr_schedule == "wsd":
        return cfg.warmup_steps
    return min(cfg.warmup_steps, max(1, total // 5))


def lr_at(step: int, cfg: TrainConfig, total: int | None) -> float:
    """Linear warm-up to the peak (over ``warmup_steps(cfg, total)``), then cosine decay to
    ``min_lr_ratio * lr`` at ``total``. ``wsd``: warm-up, the peak, then a linear decay over
    the last ``decay_frac`` of ``total``; nothing before the decay depends on ``total``.
    """
    warmup = warmup_steps(cfg, total)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.lr_schedule == "wsd":
        decay = 0 if total is None else max(1, round(cfg.decay_frac * total))
        if total is None or step < total - decay:
            return cfg.lr
        progress = min(1.0, (step - (total - decay) + 1) / decay)
        return cfg.lr * (1 - (1 - cfg.min_lr_ratio) * progress)
    if total is None:
        return cfg.lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(
        math.pi * progress)))


class Trainer:
    def __init__(self, cfg: TrainConfig, callbacks: list[Callable] | None = None,
                 start_from: str | Path | None = None, task=None):
        """``task``: what is trained (its data, network, objective, evaluation and checkpoint
        contents; default ``PretrainTask``, pre-training on a corpus; ``dlm.sft`` gives
        ``SFTTask``). ``start_from``: the checkpoint of another run to continue from with
        *this* config (weights, optimizer, RNG, step; the plan comes from ``cfg``): an
        annealed branch."""
        self.callbacks = callbacks or []
        self.dist = DistInfo.from_env()
        if self.dist.world_size > 1 and not dist.is_initialized():
            # gloo carries the small CPU tensors (loss means, stop flags, fingerprints); NCCL
            # the gradients when the model is on GPUs.
            cuda = torch.cuda.is_available() and cfg.device != "cpu"
            dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.run_dir = Path(cfg.run_dir)
        self.cfg, self.resuming = self._resolve_resume(cfg.validate())
        cfg = self.cfg
        self.kind = kinds.get(cfg.kind)
        self.task = task if task is not None else PretrainTask()
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // self._local_world())
        torch.set_num_threads(threads)

        self.task.setup(self)
        for name in ("tokenizer", "seq_len", "loader", "val_chunks", "train_stream_tokens"):
            setattr(self, name, getattr(self.task, name))
        torch.manual_seed(cfg.seed)
        self.network = self.task.build_network(self).to(self.device)
        self.attn = self.task.attention(self)
        self.network.default_attention = self.attn
        self.objective = self.task.objective(self)
        self.optimizer = self._optimizer()
        self.step, self.total_steps, self.elapsed = 0, self._planned_steps(), 0.0
        self.rows: list[dict] = []
        self.last_eval: EvalResult | None = None
        if self.resuming:
            self._load_checkpoint(self.run_dir)
        elif start_from is not None:
            self._load_checkpoint(Path(start_from), plan_from_config=True)
        if self.dist.is_main and not self.resuming:
            for line in self._plan_notes():
                print(f"dlm: {line}", file=sys.stderr)
        self.model = self.network
        if cfg.compile:
            self.model = torch.compile(self.model)
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # an expert no token was routed to gets no gradient in that step
            self.model = DDP(self.model, device_ids=[self.device.index]
                             if self.device.type == "cuda" else None,
                             find_unused_parameters=bool(self.network.config.n_experts))

    # ---------------------------------------------------------------------------------------
    # setup helpers

    def _local_world(self) -> int:
        return int(os.environ.get("LOCAL_WORLD_SIZE", self.dist.world_size))

    def _resolve_resume(self, cfg: TrainConfig) -> tuple[TrainConfig, bool]:
        if self.dist.is_main:
            ckpt.recover(self.run_dir)
        self._barrier()
        if ckpt.has_checkpoint(self.run_dir):
            if not cfg.resume:
                raise DLMError(f"{self.run_dir} already holds a training run: pass --resume to "
                               "continue it, or choose another --out")
            saved = TrainConfig.from_dict(json.loads(
                (self.run_dir / CONFIG_FILE).read_text())["train"])
            given = cfg.to_dict()
            merged = saved.to_dict()
            for key in RESUME_OVERRIDABLE:
                if key != "init_from" or given[key] is not None:  # not given: as recorded
                    merged[key] = given[key]
            return TrainConfig.from_dict(merged).validate(), True
        leftovers = {p.name for p in self.run_dir.iterdir()} if self.run_dir.exists() else set()
        if leftovers == {"metrics.csv"}:  # a run stopped before its first checkpoint
            if self.dist.is_main:
                (self.run_dir / "metrics.csv").unlink()
        elif leftovers:
            raise DLMError(f"{self.run_dir} exists and is not a dlm run; choose another --out")
        if cfg.resume and self.dist.is_main and (cfg.progress or self.run_dir.exists()):
            print(f"dlm: --resume: nothing to resume in {self.run_dir} (no checkpoint); "
                  "starting a new run", file=sys.stderr)
        return cfg, False

    def _optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.network.parameters() if p.requires_grad]  # LoRA: the adapter
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(0.9, self.cfg.beta2),
                                 fused=fused)

    def _planned_steps(self) -> int | None:
        cfg = self.cfg
        if cfg.max_steps is not None:
            return cfg.max_steps
        if cfg.epochs is not None:  # the nearest whole number of steps (half up)
            return max(1, math.floor(cfg.epochs * self.loader.num_sequences / cfg.batch_size
                                     + 0.5))
        return None  # sized from the measured speed (--max-minutes)

    def _plan_notes(self) -> list[str]:
        """One line each: what --epochs came to in whole steps (when not exactly the epochs
        asked for), and an explicit --warmup-steps that the run's length shortened."""
        cfg, total, notes = self.cfg, self.total_steps, []
        if cfg.epochs is not None and cfg.max_steps is None and total is not None:
            actual = self.loader.epochs_at(total)
            if abs(actual - cfg.epochs) > 1e-9:
                notes.append(f"--epochs {cfg.epochs:g} of {self.loader.num_sequences} "
                             f"sequences at batch {cfg.batch_size} = {total} steps = "
                             f"{actual:.2f} epochs")
        used = warmup_steps(cfg, total)
        if used < cfg.warmup_steps and cfg.warmup_steps != WARMUP_DEFAULT:
            notes.append(f"--warmup-steps {cfg.warmup_steps} is more than a fifth of this "
                         f"{total}-step run: warming up over {used} step{'s' * (used > 1)}")
        elif cfg.lr_schedule == "wsd" and total is not None and used > total:
            notes.append(f"the warm-up ({used} steps) is longer than this {total}-step wsd "
                         "run, which never reaches its peak rate: lower --warmup-steps")
        return notes

    @property
    def budget_s(self) -> float | None:
        cfg = self.cfg
        if cfg.max_minutes is not None:
            return cfg.max_minutes * 60
        if cfg.max_steps is None and cfg.epochs is None:
            return 10 * 60.0
        return None

    def _barrier(self) -> None:
        if self.dist.world_size > 1:
            dist.barrier()

    def _main_only(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on rank 0 while the others wait; if it fails, every rank raises (instead
        of the others hanging in the next collective)."""
        error = None
        if self.dist.is_main:
            try:
                fn()
            except Exception as e:  # re-raised below, on every rank
                error = e
        if self.dist.world_size > 1:
            flag = torch.tensor([int(error is not None)])
            dist.broadcast(flag, src=0)
            if flag.item() and error is None:
                raise RuntimeError("rank 0 failed (see its error above); stopping this rank")
        if error is not None:
            raise error

    # ---------------------------------------------------------------------------------------
    # checkpoints

    def _rng_states(self) -> list[dict]:
        mine = ckpt.rng_state()
        if self.dist.world_size == 1:
            return [mine]
        gathered: list = [None] * self.dist.world_size
        dist.all_gather_object(gathered, mine)
        return gathered

    def save_checkpoint(self) -> None:
        rngs = self._rng_states()  # every rank takes part in the gather
        fingerprints = self._check_lockstep()
        state = {"step": self.step, "total_steps": self.total_steps, "elapsed_s": self.elapsed,
                 "samples_seen": self.step * self.cfg.batch_size,
                 "world_size": self.dist.world_size, "rank_fingerprints": fingerprints}

        def write(tmp: Path) -> None:
            self.task.save_model(self, tmp)
            write_csv(tmp / "metrics.csv", self.rows)
            plot_losses(tmp / "loss.png", self.rows, self.task.plot_title(self),
                        self.kind.loss_label)
            ckpt.save_train_state(tmp, state, self.optimizer, rngs)

        self._main_only(lambda: ckpt.atomic_write_dir(self.run_dir, write))

    def _load_checkpoint(self, path: Path, plan_from_config: bool = False) -> None:
        config = self.task.load_weights(self, path)
        state, optim, rng = ckpt.load_train_state(path, self.dist.rank)
        if state.get("world_size", 1) != self.dist.world_size:
            raise DLMError(f"{self.run_dir} was trained with {state.get('world_size', 1)} "
                           f"processes; resume it with the same number")
        self.optimizer.load_state_dict(optim)
        ckpt.set_rng_state(rng)
        self.step = state["step"]
        self.total_steps = (self._planned_steps() if plan_from_config else None) \
            or state["total_steps"]
        self.elapsed = state["elapsed_s"]
        # rows logged after the checkpoint by the stopped run are dropped (they will be redone)
        self.rows = [r for r in read_csv(path / "metrics.csv") if r["step"] <= self.step]
        self._barrier()  # every rank has read the file before rank 0 rewrites it
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_csv(self.run_dir / "metrics.csv", self.rows)
        if config.get("eval"):
            self.last_eval = EvalResult(**config["eval"])

    def _check_lockstep(self) -> list[float]:
        """A fingerprint of every rank's weights; under DDP they must be bit-identical."""
        fp = torch.stack([p.detach().double().sum() + p.detach().double().abs().sum()
                          for p in self.network.parameters()]).sum().reshape(1).cpu()
        if self.dist.world_size == 1:
            return [fp.item()]
        allfp = [torch.zeros_like(fp) for _ in range(self.dist.world_size)]
        dist.all_gather(allfp, fp)
        if any(not torch.equal(allfp[0], f) for f in allfp[1:]):
            raise RuntimeError(f"DDP ranks diverged at step {self.step}: {allfp}")
        return [f.item() for f in allfp]

    # ---------------------------------------------------------------------------------------
    # the loop

    def evaluate(self) -> EvalResult:
        """The task's held-out number for the network as it is now."""
        return self.task.evaluate(self)

    def model_config(self) -> dict:
        """The config.json a checkpoint of the run at this step holds."""
        return self.task.model_config(self)

    def _eval_row(self, row: dict) -> None:
        def run_eval() -> None:
            result = self.evaluate()
            self.last_eval = result
            row.update(val_nats_per_token=round(result.nats_per_token, 6),
                       val_bits_per_byte=round(result.bits_per_byte, 6),
                       val_se_bits_per_byte=round(result.se_bits_per_byte, 6))

        self._main_only(run_eval)

    def train_step(self, step: int) -> float:
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, cfg, self.total_steps)
        batch = self.loader.batch(step).to(self.device)
        noise = self._noise(step, len(batch))
        micro = batch.chunk(cfg.grad_accum)
        loss_sum, row = 0.0, 0
        for i, xb in enumerate(micro):
            sync = i == len(micro) - 1 or self.dist.world_size == 1
            ctx = contextlib.nullcontext() if sync else self.model.no_sync()
            part = {k: v[row:row + len(xb)] for k, v in noise.items()}
            row += len(xb)
            with ctx, autocast(self.device):
                out = self.objective(self.model, xb, noise=part, attn=self.attn)
                weight = len(xb) / len(batch)  # micro-batches may be unequal in size
                (out.loss * weight).backward()
            loss_sum += out.loss.item() * weight
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum

    def _noise(self, step: int, local_rows: int) -> dict[str, torch.Tensor]:
        """This rank's rows of the global batch's objective noise, a pure function of
        (seed, step): identical for 1 or N processes, any grad_accum, and after a resume."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        noise = self.objective.draw(self.cfg.batch_size, self.seq_len, g)
        first = self.dist.rank * local_rows
        return {k: v[first:first + local_rows] for k, v in noise.items()}

    def _decide_total(self, t_step: float, t_eval: float) -> None:
        """Size the LR schedule so the run (with its evals) fits the time budget."""
        remaining = self.budget_s - self.elapsed - t_eval  # keep room for the final eval
        per_step = t_step + t_eval / self.cfg.eval_every
        total = self.step + max(1, int(0.97 * remaining / per_step))
        if self.dist.world_size > 1:
            t = torch.tensor([total], dtype=torch.long)
            dist.broadcast(t, src=0)
            total = int(t.item())
        self.total_steps = total

    def _time_up(self) -> bool:
        up = self.budget_s is not None and self.elapsed >= self.budget_s
        if self.dist.world_size > 1:  # every rank must stop at the same step
            t = torch.tensor([int(up)])
            dist.broadcast(t, src=0)
            up = bool(t.item())
        return up

    def run(self) -> EvalResult:
        """Train to the end of the plan, write the final checkpoint, return the final eval."""
        from .progress import TrainProgress

        cfg = self.cfg
        tokens_per_step = cfg.batch_size * self.seq_len
        progress = TrainProgress(enabled=cfg.progress and self.dist.is_main,
                                 title=f"{cfg.kind} {cfg.preset}", total=self.total_steps,
                                 start=self.step)
        t_eval = 0.0
        if self.step == 0:  # baseline point on the curve, and the eval cost for planning
            t0 = time.perf_counter()
            row = {**self._base_row(), "lr": 0.0}
            self._eval_row(row)
            t_eval = time.perf_counter() - t0
            self.elapsed += t_eval
            self._log(row)
        window, win_start, win_steps = 0.0, time.perf_counter(), 0
        cal_from = self.step + CALIBRATION_STEPS[0]
        cal_to = self.step + CALIBRATION_STEPS[1]
        calib_t0 = 0.0
        with progress:
            while self.total_steps is None or self.step < self.total_steps:
                t_start = time.perf_counter()
                loss = self.train_step(self.step)
                self.step += 1
                self.elapsed += time.perf_counter() - t_start
                window += loss
                win_steps += 1
                if self.total_steps is None:
                    if self.step == cal_from:
                        calib_t0 = self.elapsed
                    elif self.step == cal_to:
                        t_step = (self.elapsed - calib_t0) / (cal_to - cal_from)
                        self._decide_total(t_step, t_eval)
                        progress.set_total(self.total_steps)
                row = None
                last = self.total_steps is not None and self.step >= self.total_steps
                if self.step % cfg.log_every == 0 or last:
                    now = time.perf_counter()
                    avg = self._all_mean(window / win_steps)
                    row = {**self._base_row(),
                           "lr": lr_at(self.step - 1, cfg, self.total_steps),
                           "train_loss": round(avg, 6),
                           "tokens_per_s": round(win_steps * tokens_per_step / (now - win_start))}
                    window, win_start, win_steps = 0.0, now, 0
                    if self.step % cfg.log_every == 0 and self._time_up():
                        last = True
                        self.total_steps = self.step
                if last or self.step % cfg.eval_every == 0:
                    row = row or self._base_row()
                    t0 = time.perf_counter()
                    self._eval_row(row)
                    self.elapsed += time.perf_counter() - t0
                if row is not None:
                    self._log(row)
                    progress.update(self.step, row, self.last_eval)
                for cb in self.callbacks:
                    cb(self, self.step, row)
                if last:
                    break
                if self.step % cfg.ckpt_every == 0:
                    self.save_checkpoint()
        self.save_checkpoint()
        if self.dist.is_main:
            progress.done(self.last_eval)
        return self.last_eval

    def _base_row(self) -> dict:
        return {"step": self.step, "tokens": self.step * self.cfg.batch_size * self.seq_len,
                "epoch": round(self.loader.epochs_at(self.step), 4),
                "elapsed_s": round(self.elapsed, 2)}

    def _all_mean(self, value: float) -> float:
        if self.dist.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.dist.world_size

    def _log(self, row: dict) -> None:
        self.rows.append(row)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            append_csv(self.run_dir / "metrics.csv", row)


class PretrainTask:
    """Pre-training on a corpus: the tokenizer (byte, a trained BPE, or a file), a fresh
    ``Transformer`` of the preset's shape, the kind's objective, and its held-out loss on the
    corpus's validation split. A task gives the one training loop (``Trainer``) its data,
    network, objective and evaluator, and says what a checkpoint holds; every method gets
    the trainer (its config, processes, device, run directory, step and network)."""

    def setup(self, run) -> None:
        """Tokenizer, network config, context, training loader and held-out chunks."""
        cfg = run.cfg
        self.corpus = load_corpus(cfg.data, cfg.text_field)
        self.tokenizer = self._tokenizer(run)
        try:
            self.net_config = preset_config(
                cfg.preset, self.tokenizer.vocab_size, max_seq_len=cfg.seq_len,
                dropout=cfg.dropout, d_model=cfg.d_model, n_layers=cfg.n_layers,
                n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads)
        except ValueError as e:  # e.g. d_model not divisible by n_heads
            raise DLMError(f"bad model shape: {e}") from None
        self.seq_len = self.net_config.max_seq_len
        run.kind.check_context(self.seq_len, cfg.block_size, "--block-size")
        train_tokens = self.tokenizer.encode_batch(self.corpus.train)
        self.train_stream_tokens = sum(len(t) + 1 for t in train_tokens)
        sequences = pack_documents(train_tokens, self.tokenizer.eos_id, self.seq_len,
                                   cfg.unique_tokens, shuffle_seed=cfg.seed)
        self.loader = EpochLoader(sequences, cfg.batch_size, cfg.seed, run.dist.rank,
                                  run.dist.world_size)
        val_stream = token_stream(self.tokenizer.encode_batch(self.corpus.validation),
                                  self.tokenizer.eos_id)
        self.val_chunks = eval_chunks(val_stream, self.seq_len, cfg.eval_tokens)
        if len(self.val_chunks) == 0:
            raise DLMError(f"held-out split of {cfg.data!r} is shorter than one sequence "
                           f"({self.seq_len} tokens)")

    def build_network(self, run) -> Transformer:
        return Transformer(self.net_config)

    def attention(self, run):
        return run.kind.attention(run.cfg.block_size)

    def objective(self, run):
        return run.kind.objective(run.cfg, self.tokenizer.mask_id)

    def _tokenizer(self, run) -> Tokenizer:
        if run.resuming:
            config = json.loads((run.run_dir / CONFIG_FILE).read_text())
            return Tokenizer.load(run.run_dir / TOKENIZER_FILE, config["tokenizer"])
        if run.cfg.tokenizer != "bpe" or run.dist.world_size == 1:
            return build_tokenizer(run.cfg.tokenizer, self.corpus.train, run.cfg.vocab_size)
        # BPE under DDP: rank 0 trains it, every rank uses the very same file.
        payload = [None]
        if run.dist.is_main:
            payload = [build_tokenizer("bpe", self.corpus.train, run.cfg.vocab_size).hf.to_str()]
        dist.broadcast_object_list(payload, src=0)
        from tokenizers import Tokenizer as HFTokenizer

        return Tokenizer(HFTokenizer.from_str(payload[0]), kind="bpe")

    def evaluate(self, run) -> EvalResult:
        with autocast(run.device):
            return kinds.evaluate(run.network, run.kind, self.val_chunks,
                                  self.tokenizer.token_bytes, mask_id=self.tokenizer.mask_id,
                                  bos_id=self.tokenizer.eos_id,
                                  t_samples=run.cfg.eval_t_samples, seed=0,
                                  batch_size=max(8, run.cfg.batch_size),
                                  block_size=run.cfg.block_size)

    def model_config(self, run) -> dict:
        cfg = run.cfg
        tokens = run.step * cfg.batch_size * self.seq_len
        return {
            "kind": cfg.kind,
            "dlm_version": __version__,
            "objective": objective_config(cfg),
            "data": {**self.corpus.summary(), "seq_len": self.seq_len,
                     "train_stream_tokens": self.train_stream_tokens,
                     "unique_tokens": self.loader.tokens_per_epoch,
                     "unique_tokens_requested": cfg.unique_tokens,
                     "tokens_seen": tokens, "epochs": self.loader.epochs_at(run.step),
                     "eval_tokens": self.val_chunks.numel()},
            "train": cfg.to_dict(),
            "step": run.step,
            "params": {"total": run.network.num_params(),
                       "non_embedding": run.network.num_params(non_embedding=True)},
            "eval": run.last_eval.to_dict() if run.last_eval else None,
        }

    def plot_title(self, run) -> str:
        """loss.png's title: what was trained on what."""
        return f"{run.cfg.kind} · {run.cfg.preset} · {run.cfg.data}"

    def save_model(self, run, path: Path) -> None:
        """The weights, tokenizer and config.json of a checkpoint."""
        save_model_dir(path, run.network, self.tokenizer, self.model_config(run))

    def load_weights(self, run, path: Path) -> dict:
        """Put a checkpoint's weights into the run's network; returns its config.json."""
        return load_weights_into(run.network, path, run.device)


def objective_config(cfg: TrainConfig) -> dict:
    """What a checkpoint records about its objective (the sampler needs the block size)."""
    return kinds.get(cfg.kind).objective_config(cfg)
