"""rsseg:score - compare a class raster with a label raster (OA, mIoU, mF1, kappa)."""

import json

from qgis.core import (QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterRasterLayer)

from .base import RssegAlgorithm

# Algorithm output name -> key in rsseg's JSON report.
METRICS = {"OA": "oa", "MIOU": "miou", "MF1": "mf1", "KAPPA": "kappa"}


class ScoreAlgorithm(RssegAlgorithm):
    INPUT = "INPUT"
    LABELS = "LABELS"
    OUTPUT = "OUTPUT"

    def name(self):
        return "score"

    def displayName(self):  # noqa: N802
        return self.tr("Score against labels")

    def shortHelpString(self):  # noqa: N802
        return self.tr(
            "Compares a predicted class raster with a label raster of the same grid and "
            "writes a JSON report (confusion matrix, per-class IoU/F1/precision/recall). "
            "Overall accuracy (OA), mean IoU (MIOU), mean F1 (MF1) and Cohen's kappa (KAPPA) "
            "are also returned as outputs, for use in models.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Prediction")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.LABELS, self.tr("Labels")))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Report"), fileFilter="JSON files (*.json)"))
        for name, title in (("OA", "Overall accuracy"), ("MIOU", "Mean IoU"),
                            ("MF1", "Mean F1"), ("KAPPA", "Cohen's kappa")):
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(title)))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        report = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        args = [self.raster_path(parameters, self.INPUT, context),
                self.raster_path(parameters, self.LABELS, context),
                "--json", report, "--overwrite"]
        self.run_cli("score", args, feedback)
        metrics = read_metrics(report)
        for name, value in metrics.items():
            feedback.pushInfo(f"{name}: {'n/a' if value is None else f'{value:.4f}'}")
        return {self.OUTPUT: report, **metrics}


def read_metrics(report_path):
    """{"OA": float|None, ...} from rsseg's JSON report (metrics at the top level or
    under "metrics")."""
    try:
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as exc:
        raise QgsProcessingException(f"{report_path}: cannot read the rsseg score report: {exc}")
    if isinstance(report.get("metrics"), dict):
        report = report["metrics"]
    return {name: _number(report.get(key)) for name, key in METRICS.items()}


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
