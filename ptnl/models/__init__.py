"""What a run trains and scores with: CLIP through open_clip and its weights, prompt learners, heads and baselines, losses."""
