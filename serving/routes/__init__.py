"""The Serving API's routes, one APIRouter per concern."""
