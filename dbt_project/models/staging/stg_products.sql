with latest as (
    {{ latest_row(source('raw', 'products')) }}
)
select
    id as product_id,
    name,
    category,
    price,
    updated_at
from latest
