"""Layers, one subpackage per family above a shared core.

``core`` is imported by every family; a family never imports the joint model, the pipeline
or serving. ``multi_scenario`` may compose ``multi_task`` layers (HiNet extracts tasks with
CGC); no other family imports another.
"""
