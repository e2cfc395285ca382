"""Mutation check: each defining equation, broken on purpose, must make a test fail.

Every entry of :data:`MUTATIONS` replaces one snippet of one module (the snippet must occur
exactly once) by a plausible wrong equation: a removed stop-gradient, a gate fed the wrong
input, a per-scenario statistic replaced by a batch one, the cascade product swapped, the
propensity removed. For each, the check copies the package to a temporary folder, applies
the mutation there (the working tree is never touched), runs the listed test files, and
reports ``caught`` when at least one test fails, ``SURVIVED`` when all pass and ``ERROR``
when a test errors without any failing (a broken fixture proves nothing).

Run on demand (about 1 minute per mutation on 2 cores)::

    .venv/bin/python tools/mutation_check.py               # every mutation
    .venv/bin/python tools/mutation_check.py --only esmm_product pcgrad_no_projection
    .venv/bin/python tools/mutation_check.py --list

The exit status is 1 when a mutation survives or a snippet no longer matches its module
(``tests/test_mutation_check.py`` checks the snippets in the suite, so the list cannot rot
silently).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]  # test files or pytest node ids
    why: str  # the equation it breaks


_ESMM = "tfjoint/layers/multi_task/entire_space_multi_task.py"
_ESMM_TESTS = ("tfjoint/layers/multi_task/entire_space_multi_task_test.py",)
_PN = "tfjoint/layers/multi_scenario/partitioned_normalization.py"
_PN_TESTS = ("tfjoint/layers/multi_scenario/partitioned_normalization_test.py",)
_ADI = "tfjoint/layers/multi_scenario/adaptive_domain_interest.py"
_CML = "tfjoint/layers/multi_behavior/contrastive_meta_learning.py"
_INFONCE = "tfjoint/layers/core/contrastive.py"
_CML_TESTS = ("tfjoint/layers/multi_behavior/contrastive_meta_learning_test.py",)
_MBSTR_BLOCKS = "tfjoint/layers/multi_behavior/multi_behavior_transformer.py"
_ATTENTION_BLOCKS = "tfjoint/layers/retrieval/self_attention_blocks.py"
_NOVA_TEST = "tfjoint/layers/multi_modal/noninvasive_self_attention_test.py"
_NOVA_ENCODER_TEST = "tfjoint/layers/multi_modal/noninvasive_sequence_encoder_test.py"
_FREEDOM = "tfjoint/layers/multi_modal/freezing_and_denoising_graphs.py"
_FREEDOM_TEST = "tfjoint/layers/multi_modal/freezing_and_denoising_graphs_test.py"
_ALIGN = "tfjoint/layers/multi_modal/contrastive_alignment.py"
_ALIGN_TEST = "tfjoint/layers/multi_modal/contrastive_alignment_test.py"
_BM3_TEST = "tfjoint/layers/multi_modal/bootstrap_multi_modal_test.py"
_MMMLP = "tfjoint/layers/multi_modal/multi_modal_multilayer_perceptron.py"
_MMMLP_TEST = "tfjoint/layers/multi_modal/multi_modal_multilayer_perceptron_test.py"
_MM_ENCODERS_TEST = "tfjoint/layers/multi_modal/item_content_encoders_test.py"
_MBSTR_TESTS = ("tfjoint/layers/multi_behavior/multi_behavior_sequential_transformer_test.py",)

MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "esmm_product",
        "tfjoint/joint/cascade.py",
        'keras.layers.Multiply(name=f"{name}_joint", dtype="float32")',
        'keras.layers.Minimum(name=f"{name}_joint", dtype="float32")',
        _ESMM_TESTS,
        "ESMM eq. 2: pCTCVR = pCTR * pCVR (swapped for min(pCTR, pCVR))",
    ),
    Mutation(
        "esmm_loss_on_conditional",
        "tfjoint/layers/core/contracts.py",
        "keras.losses.binary_crossentropy(label, joint), sample_weight)",
        "keras.losses.binary_crossentropy(label, conditional), sample_weight)",
        _ESMM_TESTS,
        "ESMM eq. 3: the entire-space loss is on pCTCVR, not on pCVR",
    ),
    Mutation(
        "escm2_no_propensity",
        _ESMM,
        "propensity = ops.maximum(ops.stop_gradient(parent_joint), self.propensity_clip)",
        "propensity = ops.ones_like(parent_joint)",
        _ESMM_TESTS,
        "ESCM2 IPS/DR: clicked rows weighted by 1 / p_hat (p_hat := 1)",
    ),
    Mutation(
        "escm2_propensity_gradient",
        _ESMM,
        "propensity = ops.maximum(ops.stop_gradient(parent_joint), self.propensity_clip)",
        "propensity = ops.maximum(parent_joint, self.propensity_clip)",
        _ESMM_TESTS,
        "ESCM2 stop-gradient (1): the propensity is a constant of the counterfactual risk",
    ),
    Mutation(
        "escm2_dr_imputed_gradient",
        _ESMM,
        "ops.stop_gradient(imputed) + parent_label * (error - ops.stop_gradient(imputed)) / propensity",
        "imputed + parent_label * (error - imputed) / propensity",
        _ESMM_TESTS,
        "ESCM2-DR stop-gradient (2): the imputed error is a constant of the DR risk",
    ),
    Mutation(
        "escm2_imputation_error_gradient",
        _ESMM,
        "ops.square(ops.stop_gradient(error) - imputed)",
        "ops.square(error - imputed)",
        _ESMM_TESTS,
        "ESCM2-DR stop-gradient (3): the imputation loss trains only the imputation tower",
    ),
    Mutation(
        "pn_batch_over_p",
        _PN,
        "counts = ops.sum(onehot, axis=0)[:, None]",
        "counts = ops.ones_like(ops.sum(onehot, axis=0)[:, None]) * ops.cast(ops.shape(z)[0], 'float32') / "
        "(self.num_scenarios + 1.0)",
        _PN_TESTS,
        "partitioned normalization: per-scenario row counts (replaced by batch / P)",
    ),
    Mutation(
        "pn_singleton_statistics",
        _PN,
        "own = counts[:p] >= float(self.min_count)",
        "own = counts[:p] >= 1.0",
        _PN_TESTS,
        "partitioned normalization: a scenario below min_count rows takes the batch statistics",
    ),
    Mutation(
        "mmoe_gate_input",
        "tfjoint/layers/multi_task/multi_gate_mixture_of_experts.py",
        "softmax_gate(gate, inputs, self.gate_temperature)",
        "softmax_gate(gate, ops.zeros_like(inputs), self.gate_temperature)",
        ("tfjoint/layers/multi_task/multi_gate_mixture_of_experts_test.py",),
        "MMoE eq. 5: g_k(x) = softmax(W_gk x) reads the input",
    ),
    Mutation(
        "ple_gate_expert_order",
        "tfjoint/layers/multi_task/progressive_layered_extraction.py",
        "members = [[*range(k * own, (k + 1) * own), *shared] for k in range(len(self.task_names))]",
        "members = [[*shared, *range(k * own, (k + 1) * own)] for k in range(len(self.task_names))]",
        ("tfjoint/layers/multi_task/progressive_layered_extraction_test.py",),
        "PLE eq. 2: gate column j weighs selected expert j (task experts, then shared)",
    ),
    Mutation(
        "star_additive_weights",
        "tfjoint/layers/core/scenarios.py",
        "return w_p * kernel[None], b_p + bias[None]",
        "return w_p + kernel[None], b_p + bias[None]",
        ("tfjoint/layers/multi_scenario/star_topology_fully_connected_test.py",),
        "STAR eq. 1: W_p ⊙ W (element-wise product, not a sum)",
    ),
    Mutation(
        "uncertainty_no_log_variance_term",
        "tfjoint/balancing/uncertainty_weighting.py",
        "+ 0.5 * s",
        "+ 0.0 * s",
        ("tfjoint/balancing/balancing_test.py",),
        "Kendall et al. eq. 7: the log sigma regulariser",
    ),
    Mutation(
        "pcgrad_no_projection",
        "tfjoint/balancing/projecting_conflicting_gradients.py",
        "projected = projected - coefficient * other",
        "projected = projected",
        ("tfjoint/balancing/projecting_conflicting_gradients_test.py",),
        "PCGrad: g_i <- g_i - (g_i . g_j / |g_j|^2) g_j on conflict",
    ),
    Mutation(
        "aitm_calibrator_direction",
        "tfjoint/layers/multi_task/adaptive_information_transfer_multi_task.py",
        "ops.relu(joint - parent_joint)",
        "ops.relu(parent_joint - joint)",
        ("tfjoint/layers/multi_task/adaptive_information_transfer_multi_task_test.py",),
        "AITM eq. 7: the calibrator penalises y_t > y_{t-1}",
    ),
    Mutation(
        "aitm_attention_scale",
        "tfjoint/layers/multi_task/adaptive_information_transfer_multi_task.py",
        "scores / (self.tower_units[-1] ** 0.5)",
        "scores",
        ("tfjoint/layers/multi_task/adaptive_information_transfer_multi_task_test.py",),
        "AITM eq. 4: attention scores divided by sqrt(k)",
    ),
    Mutation(
        "m_lora_wrong_scenario",
        "tfjoint/layers/multi_scenario/multi_scenario_low_rank_adaptation.py",
        'down = ops.einsum("bi,sir->bsr", h, a) * onehot[:, :, None]',
        'down = ops.einsum("bi,sir->bsr", h, a) * ops.roll(onehot, 1, axis=1)[:, :, None]',
        ("tfjoint/layers/multi_scenario/multi_scenario_low_rank_adaptation_test.py",),
        "M-LoRA: row of scenario t gets B_t A_t x (rolled to another scenario's pair)",
    ),
    Mutation(
        "sample_weight_ignored",
        "tfjoint/joint/model.py",
        "weighted_mean(per_example, self._task_rows(task, y, weights))",
        "weighted_mean(per_example, task.defined_rows(y))",
        ("tfjoint/joint/model_test.py::test_sample_weight_weighs_every_rows_contribution_to_every_task_loss",),
        "fit's sample_weight weighs every task loss",
    ),
    Mutation(
        "stem_no_stop_gradient",
        "tfjoint/layers/multi_task/shared_and_task_specific_embeddings.py",
        "out if other == name else ops.stop_gradient(out)",
        "out if other == name else out",
        ("tfjoint/layers/multi_task/shared_and_task_specific_embeddings_test.py",),
        "STEM: other tasks' experts are stop-gradient in task k's mixture",
    ),
    Mutation(
        "stem_gate_own_embedding_only",
        "tfjoint/layers/multi_task/shared_and_task_specific_embeddings.py",
        "softmax_gate(gate, specific[name] + shared, self.gate_temperature)",
        "softmax_gate(gate, specific[name], self.gate_temperature)",
        ("tfjoint/layers/multi_task/shared_and_task_specific_embeddings_test.py",),
        "STEM: the task gate reads x_k + x_shared",
    ),
    Mutation(
        "dselect_k_entropy_batch_mean",
        "tfjoint/layers/multi_task/dselect_k_mixture_of_experts.py",
        "return -ops.sum(r * ops.log(r + _EPSILON))",
        "return -ops.mean(r * ops.log(r + _EPSILON))",
        ("tfjoint/layers/multi_task/dselect_k_mixture_of_experts_test.py",),
        "DSelect-k: the entropy regulariser is summed (official EntropyRegularizer)",
    ),
    Mutation(
        "star_auxiliary_not_added_to_logit",
        "tfjoint/joint/model.py",
        "([logit, logit_offset])",
        "([logit, 0.0 * logit_offset])",
        ("tfjoint/layers/multi_scenario/star_topology_fully_connected_test.py",),
        "STAR sec. 4.4: sigmoid(s_m + s_a), the auxiliary output added to the logit",
    ),
    Mutation(
        "stem_task_experts_read_shared_tables",
        "tfjoint/layers/multi_task/shared_and_task_specific_embeddings.py",
        "{name: flat(inputs[task_fields_key(name)]) for name in self.task_names}",
        '{name: flat(inputs["fields"]) for name in self.task_names}',
        ("tfjoint/layers/multi_task/shared_and_task_specific_embeddings_test.py",),
        "STEM: task k's experts read k's own embedding tables, not the shared ones",
    ),
    Mutation(
        "adi_one_weight_per_row",
        _ADI,
        "ops.reshape(fields * a[:, :, None], (-1, self.num_fields * fields.shape[-1]))",
        "ops.reshape(fields * ops.mean(a, axis=1)[:, None, None], (-1, self.num_fields * fields.shape[-1]))",
        (_ADI.replace(".py", "_test.py"),),
        "ADI sec. 3.2: the domain interest weight a_i scales field i (not one weight per row)",
    ),
    Mutation(
        "adi_forward_network_shared",
        _ADI,
        "mix = onehot + (1.0 - known) / p",
        "mix = ops.ones_like(onehot) / p",
        (_ADI.replace(".py", "_test.py"),),
        "ADI sec. 3.3: the forward network after the fusion is the domain's own",
    ),
    Mutation(
        "hamur_hyper_network_per_batch",
        "tfjoint/layers/multi_scenario/hyper_network_adapter.py",
        "h = x\n        for dense, norm in zip(self.hyper_dense, self.hyper_norms):",
        "h = ops.mean(x, axis=0, keepdims=True) * ops.ones_like(x)\n"
        "        for dense, norm in zip(self.hyper_dense, self.hyper_norms):",
        ("tfjoint/layers/multi_scenario/hyper_network_adapter_test.py",),
        "HAMUR eq. 6: the core matrix I_b = H(x_b) is generated from each instance's representation",
    ),
    Mutation(
        "dselect_k_no_unreachable_penalty",
        "tfjoint/layers/multi_task/dselect_k_mixture_of_experts.py",
        "            self.add_loss(unreachable_penalty(r))",
        "            pass",
        ("tfjoint/layers/multi_task/dselect_k_mixture_of_experts_test.py",),
        "DSelect-k: the mass on codes that reach no expert is penalised (official code)",
    ),
    Mutation(
        "metabalance_one_global_norm",
        "tfjoint/balancing/meta_balance.py",
        "(1.0 - self.beta) * self.tensor_norms(stacked)",
        "(1.0 - self.beta) * ops.norm(stacked, axis=1, keepdims=True) * ops.ones_like(self.norm_averages)",
        ("tfjoint/balancing/meta_balance_test.py",),
        "MetaBalance alg. 1: one norm per parameter tensor (not one over the shared vector)",
    ),
    Mutation(
        "metabalance_default_reduce",
        "tfjoint/balancing/meta_balance.py",
        'strategy: str = "both"',
        'strategy: str = "reduce"',
        ("tfjoint/balancing/meta_balance_test.py",),
        "MetaBalance: the authors' default rescales auxiliary gradients both ways",
    ),
    Mutation(
        "gradcraft_shared_parameters_only",
        "tfjoint/balancing/grad_craft.py",
        '    gradient_scope = "all"',
        '    gradient_scope = "shared"',
        ("tfjoint/balancing/grad_craft_test.py",),
        "GradCraft: the magnitude and direction steps work on the full parameter vector",
    ),
    Mutation(
        "gradnorm_whole_shared_vector",
        "tfjoint/balancing/gradient_normalization.py",
        "[layer == last for layer in self.gradient_layers]",
        "[True for layer in self.gradient_layers]",
        ("tfjoint/balancing/gradient_normalization_test.py",),
        "GradNorm sec. 3.2: G_W^(i) is taken on the last shared layer W",
    ),
    Mutation(
        "cascade_parent_tower_balanced",
        "tfjoint/balancing/task_gradients.py",
        "if count >= 2 and owners[i] is None]",
        "if count >= 2]",
        ("tfjoint/balancing/balancing_test.py::test_cascade_parent_tower_is_task_specific_and_gets_the_plain_gradient",),
        "balancing contract: a cascade parent's own tower gets its plain gradient, not a balanced one",
    ),
    Mutation(
        "balancer_total_pass_on_every_variable",
        "tfjoint/joint/balanced_step.py",
        "rest = [i for i in range(len(variables)) if i not in read_set]",
        "rest = list(range(len(variables)))",
        ("tfjoint/joint/balancer_passes_test.py::test_each_parameter_is_in_the_per_task_passes_or_in_the_total_pass_not_both",),
        "issue 17: a combined parameter's gradient comes from the per-task passes only, not also from the total's",
    ),
    Mutation(
        "unknown_scenario_masking_unused",
        "tfjoint/joint/model.py",
        "inputs = {**inputs, features.SCENARIO_KEY: masking(inputs[features.SCENARIO_KEY])}",
        "inputs = {**inputs}",
        ("tfjoint/joint/model_test.py::test_unknown_scenario_masking_trains_the_fallback_row",),
        "the fallback is trained: a seeded fraction of training rows take the unknown scenario",
    ),
    Mutation(
        "unknown_scenario_masking_to_scenario_zero",
        "tfjoint/layers/core/scenarios.py",
        "ops.full_like(inputs, unknown_scenario(self.num_scenarios))",
        "ops.zeros_like(inputs)",
        ("tfjoint/layers/core/scenarios_test.py::test_unknown_scenario_masking_hides_a_seeded_fraction_in_training_only",),
        "masking replaces the scenario by the unknown id P (not by a known scenario)",
    ),
    Mutation(
        "serving_missing_scenario_is_scenario_zero",
        "tfjoint/pipeline/transform.py",
        "value: Any = unknown_scenario(spec.num_scenarios)",
        "value: Any = 0",
        ("tfjoint/pipeline/transform_test.py::test_serving_spec_gives_missing_scalar_features_their_missing_value_path",),
        "serving contract: a request without a scenario is served as the unknown scenario",
    ),
    Mutation(
        "serving_default_exposes_auxiliary_outputs",
        "tfjoint/pipeline/trainer.py",
        "return {name: outputs[name] for name in task_names}",
        "return outputs",
        ("tests/test_pipeline_synthetic.py::test_pushed_model_has_tf_serving_layout_and_both_signatures",),
        "serving contract: serving_default returns the task outputs only",
    ),
    Mutation(
        "din_no_product_term",
        "tfjoint/layers/multi_behavior/behavior_aware_attention.py",
        "[target, seq, target - seq, target * seq]",
        "[target, seq, target - seq, target + seq]",
        ("tfjoint/layers/multi_behavior/behavior_aware_attention_test.py",),
        "DIN activation unit: MLP([t, e_j, t - e_j, t * e_j]) (the product term replaced)",
    ),
    Mutation(
        "din_pools_not_per_behavior",
        "tfjoint/layers/multi_behavior/behavior_aware_attention.py",
        "weighted = behavior_one_hot(inputs, self.num_behaviors) * self.attention_weights(inputs)[..., None]",
        "weighted = ops.ones_like(behavior_one_hot(inputs, self.num_behaviors)) * self.attention_weights(inputs)[..., None]",
        ("tfjoint/layers/multi_behavior/behavior_aware_attention_test.py",),
        "H_b = sum_j a_j 1[b_j = b] e_j (one pool for every behavior instead)",
    ),
    Mutation(
        "din_padding_attended",
        "tfjoint/layers/multi_behavior/behavior_aware_attention.py",
        "        return scores * mask\n",
        "        return scores\n",
        ("tfjoint/layers/multi_behavior/behavior_aware_attention_test.py",),
        "a_j = 0 at padded positions",
    ),
    Mutation(
        "cml_no_temperature",
        _INFONCE,
        "logits = ops.matmul(a, ops.transpose(p)) / temperature",
        "logits = ops.matmul(a, ops.transpose(p))",
        _CML_TESTS,
        "CML InfoNCE: -log(exp(cos(a_u, p_u)/τ) / Σ_v exp(cos(a_u, p_v)/τ)) (τ dropped)",
    ),
    Mutation(
        "cml_contrast_not_meta_weighted",
        _CML,
        "contrast = ops.mean(ops.sum(weights * losses, axis=1))",
        "contrast = ops.mean(ops.sum(losses, axis=1))",
        _CML_TESTS,
        "CML loss: β mean_u Σ_k w_uk L_uk (the meta weights w_uk dropped)",
    ),
    Mutation(
        "cml_meta_without_look_ahead",
        _CML,
        "meta_loss = self.target_bpr(self.views(ahead_users, ahead_items), users, positives, negatives)",
        "meta_loss = self.target_bpr(self.views(ego_users, ego_items), users, positives, negatives)",
        _CML_TESTS,
        "CML meta step: ∇_φ BPR(E - η ∇_E loss(E, w_φ)) (look-ahead removed)",
    ),
    Mutation(
        "dense_non_finite_not_imputed",
        "tfjoint/pipeline/transform.py",
        "z = (tf.where(finite, x, mean) - mean)",
        "z = (x - mean)",
        ("tfjoint/pipeline/transform_test.py",),
        "NaN/inf dense values are imputed with the finite mean (bounded at serving)",
    ),
    Mutation(
        "retrieval_blessing_on_test",
        "tfjoint/pipeline/retrieval/evaluator.py",
        '    judged = report["valid"]["full"]\n',
        '    judged = report["test"]["full"]\n',
        ("tfjoint/pipeline/retrieval/pipeline_test.py",),
        "blessing thresholds are judged on the validation items, never the test items",
    ),
    Mutation(
        "retrieval_valid_written_as_test",
        "tfjoint/pipeline/retrieval/data.py",
        "for stage, items, times in ((VALID, split.valid_items, split.valid_timestamps),",
        "for stage, items, times in ((VALID, split.test_items, split.test_timestamps),",
        ("tfjoint/pipeline/retrieval/pipeline_test.py",),
        "eval/ holds each user's validation item (epochs are chosen on it) apart from the test item",
    ),
    Mutation(
        "retrieval_user_id_ignored",
        "tfjoint/retrieval/export.py",
        "tf.where(named, module.user_lookup.lookup(features[USER_ID]), features[USER])",
        "tf.where(named, features[USER], features[USER])",
        ("tfjoint/retrieval/export_test.py",),
        "a request's original user_id is looked up in the in-graph vocabulary",
    ),
    Mutation(
        "minilm_pool_ignores_mask",
        "tfjoint/modality/minilm.py",
        "pooled = ops.sum(states * mask, axis=1)",
        "pooled = ops.sum(states, axis=1)",
        ("tfjoint/modality/minilm_test.py",),
        "MiniLM: u = sum_t m_t h_t / sum_t m_t (padding pooled too)",
    ),
    Mutation(
        "minilm_tanh_gelu",
        "tfjoint/modality/minilm.py",
        "layer._feedforward_intermediate_dense.activation = keras.activations.gelu",
        "layer._feedforward_intermediate_dense.activation = lambda x: keras.activations.gelu(x, approximate=True)",
        ("tfjoint/modality/minilm_test.py",),
        "MiniLM: the checkpoint's intermediate activation is the exact erf GELU (tanh approximation)",
    ),
    Mutation(
        "minilm_keeps_accents",
        "tfjoint/modality/minilm.py",
        "lowercase=True, strip_accents=True",
        "lowercase=True, strip_accents=False",
        ("tfjoint/modality/minilm_test.py",),
        "MiniLM tokenizer: lower-case and strip accents (accents kept)",
    ),
    Mutation(
        "hashed_bag_unsigned",
        "tfjoint/modality/item_text.py",
        "+= 1.0 if (h >> 63) & 1 else -1.0",
        "+= 1.0",
        ("tfjoint/modality/item_text_test.py",),
        "hashed bag: v = sum_w s(w) e_h(w) with a +-1 sign hash (sign dropped)",
    ),
    Mutation(
        "mbstr_attention_pair_swapped",
        "tfjoint/layers/multi_behavior/behavior_pair_attention.py",
        "self.pair_transform(q, self.attention_kernel, onehot, 0)",
        "self.pair_transform(q, self.attention_kernel, onehot, 1)",
        ("tfjoint/layers/multi_behavior/behavior_pair_attention_test.py",),
        "MB-STR: A[i,j] uses W^att_(b_i,b_j) (swapped for W^att_(b_j,b_i))",
    ),
    Mutation(
        "mbstr_no_position_bias",
        "tfjoint/layers/multi_behavior/behavior_pair_attention.py",
        "logits = logits + self.bias(onehot, ops.shape(inputs)[1])",
        "logits = logits + 0.0",
        ("tfjoint/layers/multi_behavior/behavior_pair_attention_test.py",),
        "MB-STR: A[i,j] adds the pair relative-position bias P_(b_i,b_j)(j - i) (dropped)",
    ),
    Mutation(
        "mbstr_ffn_shared_across_behaviors",
        _MBSTR_BLOCKS,
        'return ops.einsum("bltd,blt->bld", outer, onehot)',
        "return ops.mean(outer, axis=2) * ops.sum(onehot, axis=-1, keepdims=True)",
        _MBSTR_TESTS,
        "MB-STR: FFN_(b_i) is the network of the position's behavior (mean of all of them)",
    ),
    Mutation(
        "mbstr_head_gate_of_one_behavior",
        _MBSTR_BLOCKS,
        'return ops.einsum("tne,nt->ne", ops.softmax(ops.einsum("nd,tde->tne", inputs, self.gate_kernel), axis=-1), onehot)',
        'return ops.softmax(ops.einsum("nd,tde->tne", inputs, self.gate_kernel), axis=-1)[0] * ops.sum(onehot, -1)[:, None]',
        _MBSTR_TESTS,
        "MB-STR CGC head: g_b = softmax(h W^g_b) with the row's behavior b (behavior 1's gate for all)",
    ),
    Mutation(
        "mbstr_head_no_residual",
        _MBSTR_BLOCKS,
        "return inputs + self.norm(mixed)",
        "return self.norm(mixed)",
        _MBSTR_TESTS,
        "MB-STR CGC head: o = h + LN(sum_e g_e expert_e(h)) (residual dropped)",
    ),
    Mutation(
        "mbstr_query_not_target",
        "tfjoint/layers/multi_behavior/multi_behavior_sequential_transformer.py",
        "query_behavior = self.behaviors.index(self.target) + 1",
        "query_behavior = 1",
        _MBSTR_TESTS,
        "MB-STR scoring: the appended mask token carries the target behavior (the first behavior)",
    ),
    Mutation(
        "nova_side_information_in_values",
        _ATTENTION_BLOCKS,
        "v = split_heads(self.values[block](seq), self.num_heads)",
        "v = split_heads(self.values[block](seq if context is None else context), self.num_heads)",
        (
            f"{_NOVA_TEST}::test_side_information_enters_the_attention_weights_only_never_the_values",
            f"{_NOVA_ENCODER_TEST}::test_side_information_enters_the_attention_weights_only_never_the_values",
        ),
        "NOVA: V = R W^V from the item ids only (the fused id + side information fed into V)",
    ),
    Mutation(
        "nova_encoder_values_with_behaviors",
        "tfjoint/layers/multi_modal/noninvasive_sequence_encoder.py",
        'ids = ops.cast(inputs[SEQUENCE_ITEMS_KEY], "float32")',
        'ids = ops.cast(inputs["sequence"], "float32")',
        (f"{_NOVA_ENCODER_TEST}::test_side_information_enters_the_attention_weights_only_never_the_values",),
        "nova_encoder: R = the history's item id embeddings alone (the embedding's id + behavior sum fed into V)",
    ),
    Mutation(
        "nova_keys_without_side_information",
        _ATTENTION_BLOCKS,
        "k = split_heads(self.keys[block](c), heads)",
        "k = split_heads(self.keys[block](seq), heads)",
        (f"{_NOVA_TEST}::test_the_first_block_is_the_papers_attention_on_id_values",),
        "NOVA: K = F(R, S) W^K reads the fused side information (the id stream only)",
    ),
    Mutation(
        "freedom_knn_unnormalized",
        _FREEDOM,
        "values = inv_sqrt[:, None] * inv_sqrt[neighbors]",
        "values = np.ones(neighbors.shape)",
        (_FREEDOM_TEST,),
        "FREEDOM: the kNN item graph normalized S̃ = D^-1/2 S D^-1/2 (the raw 0/1 graph instead)",
    ),
    Mutation(
        "freedom_pruning_prefers_hubs",
        _FREEDOM,
        "p = 1.0 / np.sqrt(d_u * d_i)",
        "p = np.sqrt(d_u * d_i)",
        (f"{_FREEDOM_TEST}::test_pruning_keeps_the_fraction_and_prefers_edges_of_low_degree_nodes",),
        "FREEDOM: edges kept with p ∝ 1/sqrt(d_u d_i) (∝ sqrt(d_u d_i): hub edges kept first)",
    ),
    Mutation(
        "freedom_cold_rows_kept",
        _FREEDOM,
        "return cold_adjusted(self.cold_start, self.warm_items, self.item_embedding.embeddings)[0]",
        "return self.item_embedding.embeddings",
        (f"{_FREEDOM_TEST}::test_a_cold_item_scores_through_its_modality_neighbours_only",),
        "FREEDOM: a cold item's untrained id row never counts (cold_start='features')",
    ),
    Mutation(
        "bm3_gradient_through_target",
        _ALIGN,
        "target = ops.stop_gradient(target)",
        "target = ops.convert_to_tensor(target)",
        (_ALIGN_TEST,),
        "BM3 Eq. 5-7: 1 - cos(q(h), sg(h~)), the target branch gets no gradient (stop-gradient removed)",
    ),
    Mutation(
        "infonce_positive_off_diagonal",
        _INFONCE,
        "return ops.logsumexp(logits, axis=-1) - ops.diagonal(logits)",
        "return ops.logsumexp(logits, axis=-1) - ops.diagonal(ops.roll(logits, 1, axis=1))",
        (_ALIGN_TEST,),
        "InfoNCE (BM3's variant and CML): the positive of anchor n is row n of the other view (shifted)",
    ),
    Mutation(
        "bm3_no_item_residual",
        "tfjoint/layers/multi_modal/bootstrap_multi_modal.py",
        "return users, items + self.item_embedding.embeddings",
        "return users, items",
        (f"{_BM3_TEST}::test_batch_loss_is_bm3s_equation",),
        "BM3 item id view: mean_k E_i^(k) + E_i^(0) (the ego residual dropped)",
    ),
    Mutation(
        "bm3_features_not_fine_tuned",
        "tfjoint/layers/multi_modal/bootstrap_multi_modal.py",
        "table = self.item_features + self.feature_offset",
        "table = self.item_features",
        (
            f"{_BM3_TEST}::test_batch_loss_is_bm3s_equation",
            f"{_BM3_TEST}::test_features_are_fine_tuned_on_warm_items_only_as_the_authors",
        ),
        "BM3 modality view: W_m (f_i + Δ_i) + b_m, the features fine-tuned as the authors' (Δ ignored)",
    ),
    Mutation(
        "bm3_ids_given_the_features",
        "tfjoint/bench/mmr.py",
        '"bm3_ids": ("bm3", {"item_features": None, "cl_weight": 0.0, "cold_start": "none"}),',
        '"bm3_ids": ("bm3", {"cl_weight": 0.0, "cold_start": "none"}),',
        ("tfjoint/bench/mmr_test.py::test_bm3_ids_never_reads_the_item_features_and_bm3_does",),
        "bench mmr: BM3's id-only counterpart is built without the item features (given them)",
    ),
    Mutation(
        "bm3_ids_cold_rows_from_features",
        "tfjoint/bench/mmr.py",
        '"bm3_ids": ("bm3", {"item_features": None, "cl_weight": 0.0, "cold_start": "none"}),',
        '"bm3_ids": ("bm3", {"cl_weight": 0.0}),',
        ("tfjoint/bench/mmr_test.py::test_bm3_ids_never_reads_the_item_features_and_bm3_does",),
        "bench mmr: BM3's id-only counterpart scores cold items without features (cold_start='features' reads them)",
    ),
    Mutation(
        "mmmlp_token_mixing_skipped",
        _MMMLP,
        "x = x + self.mix_tokens(x, pad, training)",
        "x = x + 0.0 * self.mix_tokens(x, pad, training)",
        (
            f"{_MMMLP_TEST}::test_token_mixing_carries_earlier_modality_vectors_to_the_last_position_and_never_back",
            "tfjoint/layers/multi_modal/multi_modal_mixer_encoder_test.py"
            "::test_token_mixing_carries_earlier_item_vectors_to_the_user_and_never_back",
        ),
        "MMMLP Feature Mixer: U = X + TokenMLP(LN(X)) across the positions (token mixing dropped)",
    ),
    Mutation(
        "mmmlp_token_mixing_not_causal",
        _MMMLP,
        "ops.matmul(columns, self.token_inner * first)",
        "ops.matmul(columns, self.token_inner)",
        (f"{_MMMLP_TEST}::test_one_feature_mixer_layer_matches_the_reference",),
        "MMMLP token mixing: hidden unit j reads the positions s <= j // e (the future read)",
    ),
    Mutation(
        "mmmlp_fusion_without_norm",
        _MMMLP,
        "self.fusion(self.fusion_norm(ops.concatenate(outputs, axis=-1)))",
        "self.fusion(ops.concatenate(outputs, axis=-1))",
        (f"{_MMMLP_TEST}::test_the_forward_pass_is_feature_mixers_per_modality_then_the_fusion_mixer",),
        "MMMLP Fusion Mixer: F = LN(W^F LN([X^(0); X^(1); ...]) + b^F) (inner LN dropped)",
    ),
    Mutation(
        "mix_experts_gates_reversed",
        "tfjoint/layers/core/experts.py",
        "mixed = ops.matmul(ops.stack(weights, axis=1), experts)",
        "mixed = ops.matmul(ops.flip(ops.stack(weights, axis=1), -1), experts)",
        ("tfjoint/layers/core/experts_test.py",),
        "mix_experts_by_gates (and mix_experts, which calls it): sum_i g_i E_i as one batched matmul (expert i weighted by gate n-1-i)",
    ),
    Mutation(
        "fused_batch_norm_unbiased_moving_variance",
        "tfjoint/layers/core/batch_norm.py",
        "variance = unbiased * tf.math.divide_no_nan(rows - 1.0, rows)",
        "variance = unbiased",
        ("tfjoint/layers/core/batch_norm_test.py",),
        "fused BatchNorm: moving_variance <- m v + (1 - m) sigma^2, sigma^2 biased as Keras's (Bessel kept)",
    ),
    Mutation(
        "fused_batch_norm_momentum_swapped",
        "tfjoint/layers/core/batch_norm.py",
        "* momentum + mean * (1.0 - momentum))",
        "* (1.0 - momentum) + mean * momentum)",
        ("tfjoint/layers/core/batch_norm_test.py",),
        "fused BatchNorm: moving_mean <- m moving_mean + (1 - m) mu (momentum on the wrong term)",
    ),
    Mutation(
        "fused_batch_norm_scale_offset_swapped",
        "tfjoint/layers/core/batch_norm.py",
        "scale=gamma,\n            offset=beta,",
        "scale=beta,\n            offset=gamma,",
        ("tfjoint/layers/core/batch_norm_test.py",),
        "fused BatchNorm: y = gamma x_hat + beta (gamma and beta swapped)",
    ),
    Mutation(
        "vbpr_encoder_nonlinear",
        "tfjoint/layers/multi_modal/item_content.py",
        "return ops.matmul(features, projection)",
        "return ops.tanh(ops.matmul(features, projection))",
        (f"{_MM_ENCODERS_TEST}::test_vbpr_encoder_is_e_times_the_content_vector_without_bias",),
        "VBPR's content term θ_i = E f_i, a linear map (as the joint model's vbpr_encoder; tanh added)",
    ),
    Mutation(
        "bm3_encoder_views_swapped",
        "tfjoint/layers/multi_modal/item_content_encoders.py",
        'self.alignment({"online": view, "target": target}, training=training)',
        'self.alignment({"online": target, "target": view}, training=training)',
        (f"{_MM_ENCODERS_TEST}::test_bm3_alignment_loss_is_one_minus_cosine_to_a_stop_gradient_id_view",),
        "bm3_encoder: L_align = 1 - cos(q(h_i^m), sg(h_i)), the id view the stop-gradient target (views swapped)",
    ),
    Mutation(
        "mix_by_gates_members_ignored",
        "tfjoint/layers/core/experts.py",
        "one_hot[np.arange(len(chosen)), chosen] = 1.0",
        "one_hot[np.arange(len(chosen)), np.arange(len(chosen))] = 1.0",
        ("tfjoint/layers/core/experts_test.py",),
        "mix_experts_by_gates: gate k weighs its members m_k (here the first n_k experts instead)",
    ),
    Mutation(
        "lazy_adam_fused_betas_swapped",
        "tfjoint/joint/optimizers.py",
        "beta1=ops.cast(self.beta_1, dtype),\n                beta2=ops.cast(self.beta_2, dtype),",
        "beta1=ops.cast(self.beta_2, dtype),\n                beta2=ops.cast(self.beta_1, dtype),",
        ("tfjoint/joint/optimizers_test.py",),
        "LazyAdam dense: m += (1 - beta_1)(g - m), v += (1 - beta_2)(g^2 - v) (betas swapped)",
    ),
    Mutation(
        "lazy_adam_fused_no_epsilon",
        "tfjoint/joint/optimizers.py",
        "epsilon=ops.cast(self.epsilon, dtype),",
        "epsilon=ops.cast(0.0, dtype),",
        ("tfjoint/joint/optimizers_test.py",),
        "LazyAdam dense: theta -= alpha_t m / (sqrt(v) + epsilon) (epsilon dropped)",
    ),
    Mutation(
        "embedding_tables_one_draw",
        "tfjoint/layers/core/feature_embedding.py",
        "embeddings_initializer=self._fresh_initializer(),",
        "embeddings_initializer=self.embeddings_initializer,",
        ("tfjoint/layers/core/feature_embedding_test.py::test_every_table_starts_from_its_own_draw",),
        "FeatureEmbedding: E_k ~ init independently per table (one initializer instance: every table the same rows)",
    ),
    Mutation(
        "batch_norm_uniform_tables",
        "tfjoint/joint/builder.py",
        "BATCH_NORM_EMBEDDING_STDDEV = 1e-4",
        "BATCH_NORM_EMBEDDING_STDDEV = 0.05",
        ("tfjoint/joint/model_options_test.py::test_batch_norm_starts_the_tables_at_the_peers_spread_unless_one_is_given",),
        "build_joint_model(batch_norm=True): tables ~ N(0, 1e-4), the peers' start (a wide start under BN)",
    ),
)


def check_snippets(mutations: tuple[Mutation, ...] = MUTATIONS, root: Path = ROOT) -> list[str]:
    """Problems with the list: a snippet that does not occur exactly once, a missing test file."""
    problems = []
    names = [m.name for m in mutations]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{dup}: the name is used twice")
    for m in mutations:
        source = (root / m.path).read_text() if (root / m.path).exists() else None
        if source is None:
            problems.append(f"{m.name}: no file {m.path}")
        elif source.count(m.old) != 1:
            problems.append(f"{m.name}: the snippet occurs {source.count(m.old)} times in {m.path} (must be 1)")
        problems += [f"{m.name}: no test file {t}" for t in m.tests if not (root / t.split("::")[0]).exists()]
    return problems


def run_mutation(m: Mutation, python: str, timeout: float) -> tuple[str, float, str]:
    """Applies ``m`` to a copy of the package and runs its tests: ``(verdict, seconds, tail)``."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mutation-{m.name}-") as tmp:
        for part in ("tfjoint", "tests", "tools", "pyproject.toml"):
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, Path(tmp) / part, ignore=shutil.ignore_patterns("__pycache__"))
            elif src.exists():
                shutil.copy2(src, Path(tmp) / part)
        target = Path(tmp) / m.path
        target.write_text(target.read_text().replace(m.old, m.new, 1))
        env = {**os.environ, "PYTHONPATH": tmp, "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests]
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "TIMEOUT", time.perf_counter() - start, ""
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    # Caught means a test failed; a test that errored (e.g. in its fixture) proves nothing.
    if proc.returncode == 1 and " failed" in tail[0]:
        verdict = "caught"
    elif proc.returncode == 0:
        verdict = "SURVIVED"
    else:
        verdict = f"ERROR rc={proc.returncode}"
    return verdict, time.perf_counter() - start, tail[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the tests")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutation")
    args = parser.parse_args(argv)
    problems = check_snippets()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    chosen = list(MUTATIONS)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
        if unknown:
            parser.error(f"unknown mutations {unknown}; see --list")
        chosen = [m for m in MUTATIONS if m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:34s} {m.path}\n{'':34s} {m.why}")
        return 0
    survived = 0
    for i, m in enumerate(chosen, 1):
        verdict, seconds, tail = run_mutation(m, args.python, args.timeout)
        survived += verdict != "caught"
        print(f"[{i}/{len(chosen)}] {verdict:8s} {m.name:34s} {seconds:5.0f} s  {m.why}  | {tail}", flush=True)
    print(f"{len(chosen) - survived} of {len(chosen)} mutations caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
