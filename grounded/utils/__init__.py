"""Pure helpers (images, boxes, masks): no models, no pipeline."""
