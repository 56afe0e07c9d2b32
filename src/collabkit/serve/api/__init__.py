"""One router per resource: ratings, recommendations, items, onboarding, models, health."""
