"""HTTP API routers of ``rsir-stac serve``, one module per thing served (FastAPI ``APIRouter``s).

:func:`rsir_stac.serve.create_app` includes them.  Modules import FastAPI only
inside their router factories, so importing this package stays cheap.
"""
