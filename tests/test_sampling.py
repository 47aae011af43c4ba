"""Sampling: timestep schedules, the two steppers and their noise, audio CFG, the loop's hook and Lab colour
matching."""

import pytest
import torch

from rap_core.errors import RAPInputError
from rap_core.sampling.color import lab_to_rgb, match_colors, rgb_to_lab
from rap_core.sampling.guidance import audio_guidance
from rap_core.sampling.loop import denoise
from rap_core.sampling.schedule import flow_timesteps
from rap_core.sampling.steps import Renoise, euler, stepper

SHAPE = (2, 4, 3, 5, 6)  # latents [B, C, F, h, w]
AUDIO_SHAPE = (2, 3, 4, 8)  # audio tokens [B, K, M, D]


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def flow_model(x, t, audio):
    """A deterministic stand-in network whose velocity depends on x, t and each sample's audio."""
    gain = 1 + audio.mean(dim=(1, 2, 3))  # [B]
    return 0.7 * x * gain[:, None, None, None, None] + (t / 1000)[:, None, None, None, None]


def test_flashhead_lite_schedule():
    assert flow_timesteps(4, shift=5).tolist() == pytest.approx([1000, 937.5, 2500 / 3, 625, 0], abs=1e-9)
    assert flow_timesteps(2, shift=5).tolist() == pytest.approx([1000, 1000 * 2.5 / 3, 0], abs=1e-9)
    assert flow_timesteps(4, shift=1).tolist() == pytest.approx([1000, 750, 500, 250, 0], abs=1e-9)


def test_explicit_timesteps_are_used_as_given():
    t = flow_timesteps(4, shift=5, explicit=[999, 600.5, 10])
    assert t.tolist() == [999, 600.5, 10, 0]


@pytest.mark.parametrize(
    "explicit", [[], [500, 900], [1000, 500, 500], [1200, 500], [1000, 0], [1000, -5], [1000, float("nan")], ["a"]]
)
def test_bad_explicit_timesteps_raise(explicit):
    with pytest.raises(RAPInputError, match="strictly decreasing"):
        flow_timesteps(4, explicit=explicit)


def test_bad_steps_shift_and_sampler_raise():
    with pytest.raises(RAPInputError, match="steps"):
        flow_timesteps(0)
    with pytest.raises(RAPInputError, match="shift"):
        flow_timesteps(4, shift=0)
    with pytest.raises(RAPInputError, match="Unknown sampler 'heun'; choose one of"):
        stepper("heun")


def conditioned(model, audio):
    """model(x, t, audio) as the loop's velocity function of (x, t)."""
    return audio_guidance(model, audio)


def test_euler_integrates_a_straight_flow_exactly():
    x0, noise = randn(*SHAPE, seed=1), randn(*SHAPE, seed=2)
    calls = []

    def constant_velocity(x, t):
        calls.append(t.tolist())
        return noise - x0

    out = denoise(constant_velocity, noise.clone(), flow_timesteps(7, shift=3), stepper("euler"))
    assert (out - x0).abs().max() < 1e-12
    assert len(calls) == 7 and calls[0] == [1000.0, 1000.0]


@pytest.mark.parametrize("sampler", ["euler", "renoise"])
def test_both_samplers_reach_x0_with_the_true_velocity(sampler):
    x0, noise = randn(*SHAPE, seed=1), randn(*SHAPE, seed=2)

    def true_velocity(x, t):  # x_t = (1 - t) x0 + t eps  =>  v = eps - x0 = (x_t - x0) / t
        return (x - x0) / (t / 1000)[:, None, None, None, None]

    timesteps = flow_timesteps(0, explicit=[1000, 937.5, 625, 250])  # exact in the model's float32 t
    out = denoise(true_velocity, noise, timesteps, stepper(sampler, torch.Generator().manual_seed(3)))
    assert (out - x0).abs().max() < 1e-12


def test_steps_follow_their_formulas():
    x, v = randn(*SHAPE, seed=1), randn(*SHAPE, seed=2)
    torch.testing.assert_close(euler(x, v, 937.5, 625.0), x - 0.3125 * v)
    x0 = x - 0.9375 * v
    fresh = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)).double()
    renoise = Renoise(torch.Generator().manual_seed(3))
    torch.testing.assert_close(renoise(x, v, 937.5, 625.0), 0.375 * x0 + 0.625 * fresh)
    torch.testing.assert_close(renoise(x, v, 625.0, 0.0), x - 0.625 * v)


def test_renoise_draws_fresh_noise_from_its_generator_at_every_step():
    x, audio, timesteps = randn(*SHAPE), randn(*AUDIO_SHAPE, seed=9), flow_timesteps(4, shift=5)

    def run(seed):
        return denoise(
            conditioned(flow_model, audio),
            x.clone(),
            timesteps,
            stepper("renoise", torch.Generator().manual_seed(seed)),
        )

    expected, draws = x.clone(), torch.Generator().manual_seed(11)
    for t, t_next in zip(timesteps[:-1].tolist(), timesteps[1:].tolist()):
        fresh = torch.randn(SHAPE, generator=draws).double()  # the last step draws too, and drops it
        x0 = expected - t / 1000 * flow_model(expected, torch.full((2,), t), audio)
        expected = x0 if t_next == 0 else (1 - t_next / 1000) * x0 + t_next / 1000 * fresh
    torch.testing.assert_close(run(11), expected)
    torch.testing.assert_close(run(11), run(11), rtol=0, atol=0)
    assert (run(11) - run(12)).abs().max() > 0.1
    generator = torch.Generator().manual_seed(11)
    denoise(conditioned(flow_model, audio), x.clone(), timesteps, stepper("renoise", generator))
    torch.testing.assert_close(torch.randn(3, generator=generator), torch.randn(3, generator=draws))


def counting(model_fn):
    batches = []

    def counted(x, t, audio):
        batches.append((x.shape[0], t.shape[0], audio.shape[0]))
        return model_fn(x, t, audio)

    return counted, batches


def test_guidance_scale_one_is_the_plain_model():
    model, batches = counting(flow_model)
    x, t, audio = randn(*SHAPE), torch.full((2,), 833.0), randn(*AUDIO_SHAPE, seed=1)
    torch.testing.assert_close(audio_guidance(model, audio, 1.0)(x, t), flow_model(x, t, audio), rtol=0, atol=0)
    denoise(audio_guidance(model, audio, 1.0), randn(*SHAPE), flow_timesteps(4, shift=5), stepper("euler"))
    assert batches == [(2, 2, 2)] * 5


def test_guidance_is_one_batched_forward_per_step():
    x, audio, null = randn(*SHAPE), randn(*AUDIO_SHAPE, seed=1), randn(1, *AUDIO_SHAPE[1:], seed=2)
    t = torch.full((2,), 833.0)
    model, batches = counting(flow_model)
    guided = audio_guidance(model, audio, 3.0, null)
    v_cond, v_null = flow_model(x, t, audio), flow_model(x, t, null.expand_as(audio))
    torch.testing.assert_close(guided(x, t), v_null + 3.0 * (v_cond - v_null))
    assert batches == [(4, 4, 4)]
    batches.clear()
    denoise(guided, x, flow_timesteps(4, shift=5), stepper("renoise", torch.Generator().manual_seed(0)))
    assert batches == [(4, 4, 4)] * 4


def test_the_model_sees_what_before_step_returns_at_every_step():
    timesteps, seen_by_model, before = flow_timesteps(4, shift=5), [], []
    audio = randn(*AUDIO_SHAPE)

    def model(x, t):
        seen_by_model.append(x.clone())
        return flow_model(x, t, audio)

    def before_step(i, x):
        x = x.clone()
        x[:, :, :1] = float(i)  # a prefix written at every step, like continuity does
        before.append((i, x.clone()))
        return x

    out = denoise(model, randn(*SHAPE), timesteps, stepper("euler"), before_step)
    assert [i for i, _ in before] == [0, 1, 2, 3]
    for i, ((_, given), seen) in enumerate(zip(before, seen_by_model)):
        torch.testing.assert_close(seen, given, rtol=0, atol=0)
        if i:  # each step's input is the Euler update of the previous one's, prefix rewritten
            t, t_next = float(timesteps[i - 1]), float(timesteps[i])
            updated = euler(before[i - 1][1], flow_model(before[i - 1][1], torch.full((2,), t), audio), t, t_next)
            torch.testing.assert_close(given[:, :, 1:], updated[:, :, 1:], rtol=0, atol=0)
    t = float(timesteps[3])
    torch.testing.assert_close(
        out, euler(before[3][1], flow_model(before[3][1], torch.full((2,), t), audio), t, 0.0), rtol=0, atol=0
    )


def in_gamut_rgb(*shape, seed, low=0.25, high=0.75):
    """Random sRGB colours in 0..1, channels last."""
    return low + (high - low) * torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def lab_stats(video):
    """Per-frame Lab mean and population std of a video [B, 3, T, H, W] in -1..1 -> two [B, T, 3]."""
    lab = rgb_to_lab((video.permute(0, 2, 3, 4, 1) + 1) / 2)  # [B, T, H, W, 3]
    return lab.mean((2, 3)), lab.std((2, 3), correction=0)


def test_lab_round_trip_is_accurate():
    rgb = torch.rand(4096, 3, generator=torch.Generator().manual_seed(0))
    assert (lab_to_rgb(rgb_to_lab(rgb)) - rgb).abs().max() < 1e-4
    lab = rgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(
        lab, torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0], [53.24, 80.09, 67.20]]), atol=0.02, rtol=0
    )


def test_match_colors_restores_a_lab_shifted_video():
    ref_rgb = in_gamut_rgb(2, 1, 12, 10, 3, seed=0, low=0.35, high=0.65)  # [B, 1, H, W, 3]
    ref_lab = rgb_to_lab(ref_rgb)
    scale = torch.tensor([[0.9, 1.15, 0.85], [1.1, 0.8, 1.15], [0.85, 1.0, 1.1]])[:, None, None, :]  # [T, 1, 1, 3]
    shift = torch.tensor([[4.0, -3.0, 4.0], [-5.0, 2.0, -2.0], [1.0, 4.0, 0.0]])[:, None, None, :]
    drifted = lab_to_rgb(ref_lab * scale + shift)  # [B, T, H, W, 3]
    assert (rgb_to_lab(drifted) - (ref_lab * scale + shift)).abs().max() < 1e-3  # still inside the gamut
    video = drifted.permute(0, 4, 1, 2, 3) * 2 - 1  # [B, 3, T, H, W]
    reference = ref_rgb.permute(0, 4, 1, 2, 3) * 2 - 1  # [B, 3, 1, H, W]

    before_mean, _ = lab_stats(video)
    out = match_colors(video, reference)
    mean, std = lab_stats(out)
    ref_mean, ref_std = lab_stats(reference)
    assert (before_mean - ref_mean).abs().max() > 3
    assert (mean - ref_mean).abs().max() < 1e-3 and (std - ref_std).abs().max() < 1e-3
    assert (out - reference).abs().max() < 1e-4  # each frame is the reference again


def test_match_colors_matches_statistics_of_other_content():
    video = in_gamut_rgb(1, 3, 4, 16, 16, seed=1, low=0.3, high=0.6) * 2 - 1  # [B, 3, T, H, W]
    reference = in_gamut_rgb(1, 3, 1, 8, 8, seed=2, low=0.35, high=0.7) * 2 - 1  # smaller image: only stats count
    out = match_colors(video, reference)
    mean, std = lab_stats(out)
    ref_mean, ref_std = lab_stats(reference)
    assert (mean - ref_mean).abs().max() < 1e-3 and (std - ref_std).abs().max() < 1e-3
    assert out.shape == video.shape and out.dtype == video.dtype


def test_match_colors_strength_range_and_dtype():
    video = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2.4 - 1.2  # overshoots -1..1
    reference = torch.rand(1, 3, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    assert match_colors(video, reference, 0.0) is video
    full, half = match_colors(video, reference, 1.0), match_colors(video, reference, 0.5)
    assert full.min() >= -1 and full.max() <= 1
    torch.testing.assert_close(half, (video + full) / 2)
    in_range = video.clamp(-1, 1)
    for strength in (0.3, 1.0):
        out = match_colors(in_range, reference, strength)
        assert out.min() >= -1 and out.max() <= 1
    half_precision = match_colors(in_range.bfloat16(), reference.bfloat16())
    assert half_precision.dtype == torch.bfloat16
    assert (half_precision.float() - match_colors(in_range, reference)).abs().max() < 0.05
    with pytest.raises(RAPInputError, match="strength"):
        match_colors(video, reference, 1.5)
    with pytest.raises(RAPInputError, match="reference"):
        match_colors(video, reference.expand(3, -1, -1, -1, -1))
