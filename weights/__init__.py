"""Shipped MedIQA weights, installed as the data package `mediqa_weights`.

Holds model.safetensors, config.json and the model card; `mediqa_cli.model.weights` finds this
folder both in a checkout and in an installed wheel.
"""
