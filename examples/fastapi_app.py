"""The FastAPI flow (seed 003), with the model in the database: the API stores each
input and its prediction in PostgreSQL by calling pgml's SQL functions, so it needs no
TensorFlow and no model files.

Run: PGML_EXAMPLES_URL=... uvicorn examples.fastapi_app:app
     curl -X POST localhost:8000/predictions -H 'content-type: application/json' \\
          -d '{"pixels": [0.0, ... 784 values ...]}'
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_predictions (
    id bigserial PRIMARY KEY,
    pixels float4[] NOT NULL,
    predicted text,
    scores float4[],
    created timestamptz NOT NULL DEFAULT now()
)"""


class Image(BaseModel):
    pixels: list[float] = Field(min_length=784, max_length=784)


class Prediction(BaseModel):
    id: int
    predicted: str
    scores: list[float]


def create_app(url: str, model: str = "digits") -> FastAPI:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(SCHEMA))
    app = FastAPI(title="digits, scored in PostgreSQL")

    @app.post("/predictions", response_model=Prediction)
    def predict(image: Image) -> Prediction:
        with engine.begin() as conn:
            try:
                row = conn.execute(
                    sa.text(
                        "INSERT INTO api_predictions (pixels, predicted, scores) "
                        "SELECT p, pgml.classify(:model, p), pgml.predict(:model, p) "
                        "FROM (SELECT CAST(:pixels AS float4[]) AS p) input "
                        "RETURNING id, predicted, scores"
                    ),
                    {"model": model, "pixels": image.pixels},
                ).one()
            except sa.exc.DBAPIError as e:  # the server's message says what is wrong
                raise HTTPException(422, str(e.orig).split("\n")[0]) from None
        return Prediction(id=row.id, predicted=row.predicted, scores=row.scores)

    @app.get("/predictions/{prediction_id}", response_model=Prediction)
    def get(prediction_id: int) -> Prediction:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT id, predicted, scores FROM api_predictions WHERE id = :i"),
                {"i": prediction_id},
            ).one_or_none()
        if row is None:
            raise HTTPException(404, "no such prediction")
        return Prediction(id=row.id, predicted=row.predicted, scores=row.scores)

    return app


if os.environ.get("PGML_EXAMPLES_URL"):
    app = create_app(os.environ["PGML_EXAMPLES_URL"])
