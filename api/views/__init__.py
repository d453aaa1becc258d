"""Domain results translated into the API's shapes (`api.schemas`): the only place the two meet."""
