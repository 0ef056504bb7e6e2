from services.validator.app import create_app
from services.validator.settings import ValidatorSettings
from shared.serve import serve

serve(ValidatorSettings, create_app)
