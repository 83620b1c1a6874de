"""The audit of the frozen finder: metrics, calibration, stratified metrics, shortcut gates, failure modes."""
