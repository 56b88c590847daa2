"""The built-in task families: classification, segmentation and denoising.

Each entry names its parts by ``"module:attribute"`` (see :class:`~medsight.families.TaskFamily`);
nothing here imports them.

Examples
--------
>>> from medsight.families.builtin import CLASSIFICATION, SEGMENTATION
>>> CLASSIFICATION.default_architecture, SEGMENTATION.default_architecture
('smallcnn', 'dynunet')
"""

from __future__ import annotations

from medsight.core.task import Task
from medsight.families import TaskFamily

__all__ = [
    "CLASSIFICATION",
    "DENOISING",
    "DETECTION",
    "FAMILIES",
    "RISK",
    "SEGMENTATION",
    "SYNTHESIS",
]

CLASSIFICATION = TaskFamily(
    name="classification",
    tasks=(Task.BINARY, Task.MULTICLASS, Task.ORDINAL, Task.MULTILABEL),
    summary="binary, multi-class, ordinal and multi-label classifiers of 2D and 3D images, "
    "calibrated, with an operating threshold, Grad-CAM and an OOD reference",
    config="medsight.training.config:ClassifyConfig",
    run="medsight.training.classification:train_classifier",
    predictor="medsight.inference.classify:Predictor",
    evaluate="medsight.evaluation.classification_eval:evaluate_classifier",
    analyze="medsight.analysis.classification:analyze_classification",
    command="medsight.cli.train:classify",
    command_name="classify",
    # registry names (medsight.models.registry) that train as classifiers
    architectures=(
        "smallcnn",
        "classifier",
        "resnet10",
        "resnet18",
        "resnet34",
        "resnet50",
        "densenet121",
        "efficientnet",
        "seresnet50",
        "vit",
    ),
    run_folders=("package", "model"),  # model/: classification runs of earlier versions
)

SEGMENTATION = TaskFamily(
    name="segmentation",
    tasks=(Task.SEGMENTATION,),
    summary="self-configuring 2D / 3D segmentation (nnU-Net's planning rules on MONAI "
    "networks) with sliding-window inference, mirror TTA, measurements and an OOD reference",
    config="medsight.training.seg_runner:SegmentationRun",
    run="medsight.training.seg_runner:run_segmentation",
    predictor="medsight.inference.segment:Segmenter",
    evaluate="medsight.evaluation.segmentation:evaluate_segmenter",
    analyze="medsight.analysis.segmentation:analyze_segmentation",
    command="medsight.cli.segment:segment",
    command_name="segment",
    architectures=("dynunet", "unet", "segresnet", "unetr", "swinunetr"),
    options=frozenset({"tta"}),
    run_folders=("package",),
)

DENOISING = TaskFamily(
    name="denoising",
    tasks=(Task.DENOISING,),
    summary="blind 2D denoisers (U-Net generator, patch discriminator, L1 + SSIM + adversarial "
    "loss) for Rician MR, Poisson-Gaussian CT / X-ray, speckle US and Gaussian noise",
    config="medsight.training.denoise:DenoiseConfig",
    run="medsight.training.denoise:train_denoiser",
    predictor="medsight.inference.denoise:Denoiser",
    evaluate="medsight.evaluation.denoise:evaluate_denoiser",
    analyze="medsight.analysis.denoise:analyze_denoising",
    command="medsight.cli.denoise:train_denoise",
    command_name="denoise",
    architectures=("unet",),
    run_folders=("package",),
    slicewise=True,
    by_default=False,  # analyze --denoise
)

SYNTHESIS = TaskFamily(
    name="synthesis",
    tasks=(Task.SYNTHESIS,),
    summary="class-conditional 2D image synthesis (DDPM on MONAI's DiffusionModelUNet, DDIM "
    "sampling; or a GAN: MONAI Generator + PatchDiscriminator) writing synthetic images with "
    "provenance for training augmentation",
    config="medsight.training.synth:SynthConfig",
    run="medsight.training.synth:train_synthesizer",
    predictor="medsight.inference.synth:Synthesizer",
    evaluate="medsight.evaluation.synth:evaluate_synthesizer",
    analyze="medsight.analysis.synth:analyze_synthesis",
    command="medsight.cli.synth:train_synth",
    command_name="synth",
    architectures=("diffusion_unet", "conditional_gan_generator"),
    run_folders=("package",),
    by_default=False,  # generates images; never run on a patient's study
)

RISK = TaskFamily(
    name="risk",
    tasks=(Task.RISK,),
    summary="outcome prediction from image embeddings + clinical variables: late fusion, FiLM, "
    "GRU / LSTM / time-aware attention over a patient's visits; binary or Cox time-to-event",
    config="medsight.training.risk:RiskConfig",
    run="medsight.training.risk:train_risk",
    predictor="medsight.inference.risk:RiskPredictor",
    evaluate="medsight.evaluation.risk:evaluate_risk",
    analyze="medsight.analysis.risk:analyze_risk",
    command="medsight.cli.risk:train_risk_command",
    command_name="risk",
    architectures=("late", "film", "gru", "lstm", "attention", "clinical", "image"),
    run_folders=("package",),
    by_default=False,  # needs the patient's record, which analyze does not supply by itself
)

DETECTION = TaskFamily(
    name="detection",
    tasks=(Task.DETECTION,),
    summary="2D / 3D lesion detection (MONAI RetinaNet on a small ResNet-FPN, ATSS matching, "
    "hard negative sampling) as boxes / circles with scores, FROC-validated",
    config="medsight.training.detect:DetectConfig",
    run="medsight.training.detect:train_detector",
    predictor="medsight.inference.detect:Detector",
    evaluate="medsight.evaluation.detection_eval:evaluate_detector",
    analyze="medsight.analysis.detection:analyze_detection",
    command="medsight.cli.detect:train_detect",
    command_name="detect",
    architectures=("retinanet",),
    run_folders=("package",),
)

FAMILIES = (CLASSIFICATION, SEGMENTATION, DENOISING, SYNTHESIS, RISK, DETECTION)
