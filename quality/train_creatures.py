"""Train the tiny creature diffusion model (tests/assets/creatures_unet.safetensors) on the CPU.

What it trains: an unconditional epsilon-prediction DDPM (--prediction v: v-prediction, a diagnostic) whose network is ComfyUI's own
UNetModel (config `quality.creature_model.UNET_CONFIG`, built through comfy.model_base.BaseModel
so the module layout and state-dict keys are exactly what ComfyUI loads), on 64x64 creatures
drawn on the fly by `quality.creatures.draw_creatures`, space-to-depth encoded to [48, 16, 16]
in [-1, 1] (`creature_model.encode`); with --siblings, 64x128 images of two creatures sharing one colour
scheme (a diagnostic variant, not the shipped asset).

Recipe (all seeded by --seed; same seed + same steps + same torch build = same weights):
  * weights initialised from a seeded generator (ComfyUI leaves them uninitialised):
    N(0, 1/fan_in) weights, zero biases, unit norm scales, and zero-initialised residual
    output layers (ResBlock out conv, transformer proj_out, final out conv), as in ADM;
  * DDPM linear schedule, betas linspace(1e-4, 0.02, 1000), t uniform in 0..999,
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, loss = MSE(eps_pred, eps) (v: MSE(v_pred, sqrt(abar_t) eps - sqrt(1 - abar_t) x0));
    (ComfyUI sampling_settings beta_schedule "sqrt_linear" is this very schedule);
  * context = constant zeros [B, 1, CONTEXT_DIM] (the model is unconditional);
  * AdamW lr 4e-4 (betas 0.9/0.99, no weight decay), linear warm-up over 200 steps, then cosine
    decay to 25% of lr at the last step; gradient-norm clip 1.0; batch 32;
  * EMA of the weights, decay min(0.999, (1 + step) / (10 + step));
  * float32 (--bf16: bf16 autocast, slower on CPUs without native bf16), torch.set_num_threads(2).
A --max-minutes cap (default 55) stops the run early, saving first, if the machine is slower
than planned.

On a GPU (--device gpu: ComfyUI's torch device) the creatures are rendered and the noise drawn on the device
(the random choices of each creature still come from the seeded CPU generator), so data does not starve it;
--width widens the UNet (model_channels), --fit-steps-to-budget sets --steps from the measured speed so that
the learning-rate schedule ends at --max-minutes, --snapshot-every-minutes keeps EMA snapshots by wall time.
Without these options (the defaults) the run is the CPU recipe above, unchanged. Every --save-every steps and at the end it writes the EMA weights (fp16 safetensors, keys of
`model.diffusion_model`) to --out and a JSON record next to it (same stem, .json), both
atomically, so an interrupted run still leaves a usable asset.

    python quality/train_creatures.py --steps 1800 --seed 0
    python quality/train_creatures.py --steps 20 --out /tmp/smoke.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "support"))  # seeded_init

from quality import creature_model as cm  # noqa: E402
from quality.creatures import draw_creatures  # noqa: E402
from seeded_init import seeded_init_  # noqa: E402

DEFAULT_STEPS = 2000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=cm.ASSET)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--final-lr-fraction", type=float, default=0.25)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--snapshot-at", type=int, nargs="*", default=[],
                   help="also keep the EMA weights at these steps (beside --out, suffixed .stepN), for probes")
    p.add_argument("--stop-after", type=int, default=0,
                   help="stop (and save) after this many steps of the --steps schedule: the start of a full run, for probes")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=55.0,
                   help="safety cap: stop (and save) once this much wall time has passed")
    p.add_argument("--layout", choices=sorted(cm.LAYOUTS), default="sd-like",
                   help="UNet layout (quality.creature_model.LAYOUTS; the shipped asset uses sd-like)")
    p.add_argument("--siblings", action="store_true",
                   help="train on 64x128 images of two creatures side by side sharing one colour scheme, so that "
                        "denoising pools a part's colour across creatures through self-attention")
    p.add_argument("--twins", action="store_true",
                   help="every other batch: 64x128 images of one creature drawn twice side by side (half the batch, so "
                        "the same tokens), so that denoising one copy pools the other's colours through self-attention")
    p.add_argument("--prediction", choices=("eps", "v"), default="eps",
                   help="what the UNet predicts: eps (SD1.5) or v = sqrt(abar) eps - sqrt(1 - abar) x0 (SD2-v); v weights "
                        "the clean image more at high noise, where a part's colour must be pooled from many tokens")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (slower than float32 on CPUs without native bf16)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu: train on ComfyUI's torch device (CUDA), with the training images rendered there")
    p.add_argument("--width", type=int, default=None,
                   help="model_channels of the UNet (default: the layout's, 64); a multiple of 32 (GroupNorm)")
    p.add_argument("--fit-steps-to-budget", action="store_true",
                   help="after --calibrate-steps steps, set --steps so that the schedule ends at --max-minutes")
    p.add_argument("--calibrate-steps", type=int, default=30, help="steps timed for --fit-steps-to-budget (the first 5 not counted)")
    p.add_argument("--snapshot-every-minutes", type=float, default=0.0,
                   help="also keep the EMA weights every this many minutes of training (beside --out, suffixed .stepN)")
    return p.parse_args(argv)


def initialise(unet: torch.nn.Module, seed: int) -> None:
    """Seeded init of every parameter; residual output layers start at zero."""
    seeded_init_(unet, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for name, module in unet.named_modules():
            # ResBlock.out_layers[-1], SpatialTransformer.proj_out, UNetModel.out[-1]
            if name.endswith("out_layers.3") or name.endswith("proj_out") or name == "out.2":
                for param in module.parameters():
                    param.zero_()


def training_images(batch: int, generator: torch.Generator, siblings: bool, twins: bool = False, device=None) -> torch.Tensor:
    """[B, C, 16, 16] latents of creatures, [B, C, 16, 32] of sibling pairs sharing their colours, or (twins)
    [B/2, C, 16, 32] of one creature drawn twice (rendered on `device`, default the CPU)."""
    if twins:
        single = draw_creatures(batch // 2, generator, device=device).images
        return cm.encode(torch.cat([single, single], -1))
    first = draw_creatures(batch, generator, device=device)
    if not siblings:
        return cm.encode(first.images)
    second = draw_creatures(batch, generator, colours_of=first, device=device)
    return cm.encode(torch.cat([first.images, second.images], -1))


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    floor = args.final_lr_fraction
    return args.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def save(ema: dict, out: Path, record: dict) -> None:
    import safetensors.torch

    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in ema.items()}
    tmp = out.with_name(out.name + ".tmp")
    safetensors.torch.save_file(tensors, str(tmp), metadata={"format": "pt", "model": "e4e-creatures-unet"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    meta = out.with_suffix(".json")
    tmp = meta.with_name(meta.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, meta)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    # ComfyUI in-process to build its UNetModel with its own operations (and, with --device gpu, to name the device).
    from comfy_host import base_directory, boot_in_process

    boot_in_process(base_directory("train-base"), cpu=args.device == "cpu")
    import comfy.model_management

    device = torch.device("cpu") if args.device == "cpu" else comfy.model_management.get_torch_device()
    unet_config = cm.LAYOUTS[args.layout]
    if args.width is not None:
        unet_config = {**unet_config, "model_channels": args.width}
    unet = cm.build_base_model(torch.device("cpu"), unet_config, args.prediction).diffusion_model
    unet.float().train()
    initialise(unet, args.seed)
    unet.to(device)
    params = sum(p.numel() for p in unet.parameters())
    print(f"UNet parameters: {params:,}; steps {args.steps}; batch {args.batch}; seed {args.seed}; "
          f"out {args.out}; torch {torch.__version__}; device {device}", flush=True)

    ema = {k: v.detach().clone().float() for k, v in unet.state_dict().items()}
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    abar = cm.training_alphas_cumprod().float().to(device)
    sqrt_abar, sqrt_1m_abar = abar.sqrt(), (1 - abar).sqrt()
    data_gen = torch.Generator().manual_seed(args.seed * 1_000_003 + 1)
    noise_gen = torch.Generator(device).manual_seed(args.seed * 1_000_003 + 2)
    data_device = None if device.type == "cpu" else device  # creatures rendered where the model trains
    context = cm.empty_context(args.batch, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    ema_keys = [k for k, v in ema.items() if v.dtype.is_floating_point]

    def record(step, final_loss, wall):
        config = {k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in unet_config.items()}
        return {
            "model": f"eye-for-an-eye creatures UNet (ComfyUI UNetModel, unconditional, {args.prediction} prediction)",
            "prediction": args.prediction,
            "unet_config": config,
            "context_dim": cm.CONTEXT_DIM,
            "conditioning": "[[torch.zeros(1, 1, context_dim), {}]]",
            "layout": args.layout,
            "siblings": args.siblings,
            "twins": args.twins,
            "latent": f"pixel_unshuffle(image*2-1, {cm.DOWNSCALE}): [3,64,64] 0..1 -> "
                      f"[{cm.LATENT_CHANNELS},{cm.LATENT_SIZE},{cm.LATENT_SIZE}]; scale_factor 1.0",
            "schedule": {"betas": "linspace(1e-4, 0.02, 1000)", "comfyui_sampling_settings": cm.SAMPLING_SETTINGS},
            "parameters": params,
            "seed": args.seed,
            "steps": step,
            "steps_planned": args.steps,
            "complete": step >= args.steps,
            "stopped_by_time_cap": step < args.steps,
            "batch": args.batch,
            "lr": args.lr,
            "warmup": args.warmup,
            "final_lr_fraction": args.final_lr_fraction,
            "ema": args.ema,
            "bf16_autocast": args.bf16,
            "threads": args.threads,
            "device": comfy.model_management.get_torch_device_name(device),
            "wall_time_s": round(wall, 1),
            "steps_per_s": round(step / wall, 3) if wall > 0 else None,
            "final_loss": final_loss,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "weights": "EMA, float16",
        }

    start = time.time()
    window, last_loss = [], float("nan")
    calibration_start, next_snapshot = None, args.snapshot_every_minutes * 60
    step = 0
    while step < args.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        x0 = training_images(args.batch, data_gen, args.siblings, twins=args.twins and step % 2 == 1, device=data_device)
        t = torch.randint(0, cm.NUM_TIMESTEPS, (x0.shape[0],), generator=noise_gen, device=device)
        eps = torch.randn(x0.shape, generator=noise_gen, device=device)
        x_t = sqrt_abar[t, None, None, None] * x0 + sqrt_1m_abar[t, None, None, None] * eps
        with autocast:
            pred = unet(x_t, timesteps=t.float(), context=context[: x0.shape[0]], transformer_options={})
        wanted = eps if args.prediction == "eps" else (
            sqrt_abar[t, None, None, None] * eps - sqrt_1m_abar[t, None, None, None] * x0)
        loss = torch.nn.functional.mse_loss(pred.float(), wanted)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            if device.type == "cpu":
                for k, v in unet.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].mul_(decay).add_(v.detach().float(), alpha=1 - decay)
                    else:
                        ema[k].copy_(v)
            else:  # the same update in a few fused kernels (the weights are float32)
                state = unet.state_dict()
                targets = [ema[k] for k in ema_keys]
                torch._foreach_mul_(targets, decay)
                torch._foreach_add_(targets, [state[k].detach() for k in ema_keys], alpha=1 - decay)
        window.append(loss.detach())  # read at log time: no device sync per step
        done = step + 1
        step = done
        if args.fit_steps_to_budget:
            if done == 5:
                calibration_start = time.time()
            elif done == max(args.calibrate_steps, 6):
                rate = (time.time() - calibration_start) / (done - 5)
                remaining = args.max_minutes * 60 - (time.time() - start)
                args.steps = done + max(1, int(0.97 * remaining / rate))
                print(f"fit to budget: {rate:.4f} s/step, {args.steps} steps in {args.max_minutes} min", flush=True)
        if done % args.log_every == 0 or done == args.steps or done <= 3:
            elapsed = time.time() - start
            last_loss = sum(float(x) for x in window) / len(window)
            rate = elapsed / done
            print(f"step {done:6d}/{args.steps}  loss {last_loss:.4f}  lr {lr_at(done - 1, args):.2e}  "
                  f"elapsed {elapsed:7.1f}s  {rate:.3f} s/step  eta {rate * (args.steps - done) / 60:5.1f} min",
                  flush=True)
            if done % args.log_every == 0:
                window = []
        by_time = next_snapshot > 0 and time.time() - start >= next_snapshot and done < args.steps
        if done in args.snapshot_at or by_time:
            if by_time:
                next_snapshot += args.snapshot_every_minutes * 60
                if window:
                    last_loss = sum(float(x) for x in window) / len(window)
            snapshot = args.out.with_name(f"{args.out.stem}.step{done}{args.out.suffix}")
            save(ema, snapshot, record(done, last_loss, time.time() - start))
        out_of_time = time.time() - start > args.max_minutes * 60 or done == args.stop_after
        if done % args.save_every == 0 or done == args.steps or out_of_time:
            if out_of_time and window:
                last_loss = sum(float(x) for x in window) / len(window)
            save(ema, args.out, record(done, last_loss, time.time() - start))
            print(f"saved EMA weights at step {done} to {args.out}", flush=True)
        if out_of_time:
            print(f"stopped by --max-minutes {args.max_minutes} at step {done}/{args.steps}", flush=True)
            break
    print(f"done in {time.time() - start:.1f}s", flush=True)


if __name__ == "__main__":
    main()
