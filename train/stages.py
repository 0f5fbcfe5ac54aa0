"""The stages of the recipe, each in one place: its defaults, what it trains, what it starts from and
what the decoder is conditioned on. The trainer and the objective ask the stage; they do not compare names.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    trains: str  # "autoencoder", "decoder" (the encoder frozen) or "ldm" (the autoencoder frozen)
    needs_init: bool  # starts from a previous stage's checkpoint or a model folder
    # What the decoder sees: "posterior" (the encoder's latents as the run's `latents` setting makes
    # them) or "codec-mix" (quantized means, LDM predictions of them, and the means, per sample).
    conditioning: str = "posterior"
    defaults: dict = field(default_factory=dict)  # the paper's recipe for this stage

    @property
    def trains_encoder(self) -> bool:
        return self.trains == "autoencoder"

    @property
    def decodes(self) -> bool:
        """Whether the loss decodes pixels (and so takes the decoder's losses: LPIPS, REPA)."""
        return self.trains != "ldm"

    @property
    def fixes_latent_statistics(self) -> bool:
        """The encoder is frozen, so its latent statistics are measured once, at the start."""
        return not self.trains_encoder


# The paper's recipe (Teng et al., 2026), stage by stage.
STAGES: dict[str, Stage] = {stage.name: stage for stage in [
    Stage("stage1", "Deterministic pretraining: the decoder sees pure noise (t = 1), no latent dropout.",
          trains="autoencoder", needs_init=False,
          defaults=dict(lr=5e-5, t_mode="one", kept_lengths="all", val_steps=1)),
    Stage("stage2", "Stochastic post-training: logit-normal t, motion-driven 1D latent dropout.",
          trains="autoencoder", needs_init=True,
          defaults=dict(lr=1e-5, t_mode="logit-normal", kept_lengths="motion", val_steps=8)),
    Stage("align", "Latent alignment: 1D latents pulled to structural and 1D neighbours; larger KL.",
          trains="autoencoder", needs_init=True,
          defaults=dict(lr=1e-5, t_mode="logit-normal", kept_lengths="motion", w_align=0.01, w_kl=1e-3,
                        val_steps=8)),
    Stage("ldm", "A small latent DiT over structural + 1D latents (the autoencoder frozen).",
          trains="ldm", needs_init=True, defaults=dict(lr=1e-4, weight_decay=0.0, val_steps=8)),
    Stage("decoder-ft", "Decoder fine-tuning on LDM-predicted and quantized latents, encoder frozen.",
          trains="decoder", needs_init=True, conditioning="codec-mix",
          defaults=dict(lr=1e-5, t_mode="logit-normal", kept_lengths="motion", w_kl=0.0, w_repa=0.0,
                        val_steps=8)),
]}


def get_stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; one of {', '.join(STAGES)}") from None
