from services.extractor.app import create_app
from services.extractor.settings import ExtractorSettings
from shared.serve import serve

serve(ExtractorSettings, create_app)
