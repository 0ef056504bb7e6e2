from services.archivist.app import create_app
from services.archivist.settings import ArchivistSettings
from shared.serve import serve

serve(ArchivistSettings, create_app)
