"""Fine-tuning on EPIC-KITCHENS-100 MIR and Charades-Ego with the shared DeepSpeed loop."""
