from services.orchestrator.app import create_app
from services.orchestrator.settings import OrchestratorSettings
from shared.serve import serve

serve(OrchestratorSettings, create_app)
