"""Reading finished runs back: the study report (``report``, figures in ``plots``) and cell drawings (``draw``)."""
